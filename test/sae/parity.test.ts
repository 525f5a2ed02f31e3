// Parity with sparsify 1.3 (AuxK fixed, PR #134) on every golden variant: encode, pre-acts,
// decode, forward (no dead / many dead / few dead), backward loss and every gradient, the
// projected decoder gradient, and two schedule-free signum steps (+ eval weights); once per CPU
// GEMM kernel set this machine runs (avx512, avx2, portable).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { CODER_PARAM_NAMES, createOptimizer, gemmAvailableKernels, gemmForceKernels, SparseCoder, testing, type Tensor } from '@sparsify/core';

import { f32, FIXTURES, loadGolden, relErr, relErrToMax, scalar, sortRows, VARIANTS } from './helpers.js';

const TOL = 2e-5; // f32 vs f32 with other summation orders, relative to the largest entry
const AUXK_ALPHA = 1 / 32;

type KernelSet = 'avx512' | 'avx2' | 'portable';
const RUNS = (gemmAvailableKernels() as KernelSet[]).flatMap((kernels) => VARIANTS.map((variant) => [kernels, variant] as const));

after(() => {
  gemmForceKernels('auto');
});

for (const [kernels, variant] of RUNS) {
  test(`parity ${variant} (${kernels} GEMM)`, async (t) => {
    gemmForceKernels(kernels);
    const g = loadGolden(variant);
    const coder = await SparseCoder.loadFromDisk(join(FIXTURES, variant, 'state'));
    const x = g.get('x')!;
    const y = g.get('y');
    const k = coder.cfg.k;

    await t.test('encode (top-k as sorted sets) and pre-acts', async () => {
      const r = await coder.encode(x, { returnPreActs: g.has('encode.pre_acts') });
      const ours = sortRows(r.topActs.toFloat32Array(), r.topIndices.toInt32Array(), k);
      const gv = f32(g.get('encode.top_acts_sorted'));
      const gi = g.get('encode.top_indices_sorted')!.toInt32Array();
      const gold = sortRows(gv, gi, k);
      for (let n = 0; n < ours.v.length; n++) {
        assert.deepEqual([...ours.i[n]].sort((a, b) => a - b), [...gold.i[n]].sort((a, b) => a - b), `row ${n} indices`);
        assert.ok(relErrToMax(ours.v[n], gold.v[n]) < TOL, `row ${n} values`);
      }
      if (g.has('encode.pre_acts')) assert.ok(relErrToMax(f32(r.preActs), f32(g.get('encode.pre_acts'))) < TOL, 'pre_acts');
    });

    await t.test('decode', async () => {
      const acts = g.get('encode.top_acts')!;
      const idx = g.get('encode.top_indices')!;
      const out = await coder.decode(acts, idx);
      assert.ok(relErrToMax(out.toFloat32Array(), f32(g.get('decode.out'))) < TOL);
    });

    for (const [name, dead] of [['forward', undefined], ['forward_dead_many', g.get('dead_mask_many')], ['forward_dead_few', g.get('dead_mask_few')]] as [string, Tensor | undefined][]) {
      await t.test(name, async () => {
        const r = await coder.forward(x, { y, deadMask: dead });
        assert.ok(relErrToMax(r.saeOut.toFloat32Array(), f32(g.get(`${name}.sae_out`))) < TOL, 'sae_out');
        assert.ok(relErr(r.fvu, scalar(g.get(`${name}.fvu`))) < 1e-5, `fvu ${r.fvu}`);
        const auxk = scalar(g.get(`${name}.auxk_loss`));
        if (auxk === 0) assert.equal(r.auxkLoss, 0);
        else assert.ok(relErr(r.auxkLoss, auxk) < 1e-5, `auxk ${r.auxkLoss} vs ${auxk}`);
        const mtk = scalar(g.get(`${name}.multi_topk_fvu`));
        if (mtk === 0) assert.equal(r.multiTopkFvu, 0);
        else assert.ok(relErr(r.multiTopkFvu, mtk) < 1e-5, `multi_topk_fvu ${r.multiTopkFvu} vs ${mtk}`);
        if (name === 'forward') {
          const kk = r.latentActs.shape[1];
          const ours = sortRows(r.latentActs.toFloat32Array(), r.latentIndices.toInt32Array(), kk);
          const gold = sortRows(f32(g.get('forward.latent_acts_sorted')), g.get('forward.latent_indices_sorted')!.toInt32Array(), kk);
          for (let n = 0; n < ours.v.length; n++) {
            assert.deepEqual([...ours.i[n]].sort((a, b) => a - b), [...gold.i[n]].sort((a, b) => a - b), `latents row ${n}`);
            assert.ok(relErrToMax(ours.v[n], gold.v[n]) < TOL);
          }
        }
      });
    }

    await t.test('backward: loss, every gradient, projected W_dec grad', async () => {
      const c = await SparseCoder.loadFromDisk(join(FIXTURES, variant, 'state'));
      // The goldens' backward runs without the per-step renormalisation; state/ rows are
      // already unit norm, so renormalising changes nothing measurable.
      const r = await c.forwardBackward(x, { y, deadMask: g.get('dead_mask_many'), auxkAlpha: AUXK_ALPHA });
      assert.ok(relErr(r.loss, scalar(g.get('backward.loss'))) < 1e-5, `loss ${r.loss}`);
      const grads = c.grads();
      for (const name of CODER_PARAM_NAMES) {
        const gold = g.get(`grad.${name}`);
        if (!gold) {
          assert.ok(!grads.has(name), `unexpected grad ${name}`);
          continue;
        }
        const e = relErrToMax(grads.get(name)!.toFloat32Array(), gold.toFloat32Array());
        assert.ok(e < TOL, `grad.${name} rel err ${e}`);
      }
      if (g.has('grad_projected.W_dec')) {
        await testing.projectDecoderGrad(c.params().get('W_dec')!, c.grads().get('W_dec')!);
        const e = relErrToMax(c.grads().get('W_dec')!.toFloat32Array(), f32(g.get('grad_projected.W_dec')));
        assert.ok(e < TOL, `grad_projected.W_dec rel err ${e}`);
      }
      c.dispose();
    });

    if (g.has('signum.step1.loss_before')) {
      await t.test('two signum steps and the eval (x) weights', async () => {
        const c = await SparseCoder.loadFromDisk(join(FIXTURES, variant, 'state'));
        const opt = createOptimizer('signum', [c]);
        const lr = opt.lr;
        assert.ok(Math.abs(lr - 0.028284271247461898) < 1e-12);
        const checkParams = (prefix: string) => {
          for (const [name, p] of c.params()) {
            const gold = f32(g.get(`${prefix}.param.${name}`), `${prefix}.param.${name}`);
            const ours = p.toFloat32Array();
            let flips = 0;
            let worst = 0;
            let scale = 0;
            for (const v of gold) scale = Math.max(scale, Math.abs(v));
            for (let i = 0; i < gold.length; i++) {
              const d = Math.abs(ours[i] - gold[i]);
              if (d > 1e-5 * scale + 1e-7) {
                // A sign flip of a near-zero gradient entry (README): bounded by 2*lr per step.
                assert.ok(d <= 4 * lr * 1.001, `${prefix} ${name}[${i}] differs by ${d}`);
                flips++;
              } else worst = Math.max(worst, d);
            }
            assert.ok(flips <= 8, `${prefix} ${name}: ${flips} elements differ by a sign flip`);
          }
        };
        for (const step of [1, 2]) {
          const r = await c.forwardBackward(x, { y, deadMask: g.get('dead_mask_many'), auxkAlpha: AUXK_ALPHA });
          assert.ok(relErr(r.loss, scalar(g.get(`signum.step${step}.loss_before`))) < 1e-5, `step ${step} loss ${r.loss}`);
          await opt.step();
          checkParams(`signum.step${step}`);
        }
        await opt.eval();
        checkParams('signum.step2_eval');
        await opt.train();
        checkParams('signum.step2');
        opt.dispose();
        c.dispose();
      });
    }

    if (existsSync(join(FIXTURES, variant, 'init'))) {
      await t.test('init/ follows the init rule (decoder = normalised encoder rows, or 0)', async () => {
        const c = await SparseCoder.loadFromDisk(join(FIXTURES, variant, 'init'));
        const p = c.params();
        const enc = p.get('encoder.weight')!.toFloat32Array();
        const dec = p.get('W_dec')!.toFloat32Array();
        const D = c.dIn;
        assert.ok(p.get('encoder.bias')!.toFloat32Array().every((v) => v === 0));
        assert.ok(p.get('b_dec')!.toFloat32Array().every((v) => v === 0));
        const bound = 1 / Math.sqrt(D);
        assert.ok(enc.every((v) => Math.abs(v) <= bound));
        const fresh = await SparseCoder.create(D, c.cfg, { seed: 1 });
        const fdec = fresh.params().get('W_dec')!.toFloat32Array();
        const fenc = fresh.params().get('encoder.weight')!.toFloat32Array();
        if (c.cfg.transcode) {
          assert.ok(dec.every((v) => v === 0));
          assert.ok(fdec.every((v) => v === 0));
        } else {
          for (const [e, d] of [[enc, dec], [fenc, fdec]]) {
            for (let m = 0; m < c.numLatents; m++) {
              let ss = 0;
              for (let j = 0; j < D; j++) ss += e[m * D + j] ** 2;
              const den = Math.fround(Math.sqrt(ss)) + 1.1920929e-7;
              for (let j = 0; j < D; j++) assert.ok(Math.abs(d[m * D + j] - e[m * D + j] / den) < 1e-6);
            }
          }
        }
        assert.ok(fenc.every((v) => Math.abs(v) <= bound));
        fresh.dispose();
        c.dispose();
      });
    }
    coder.dispose();
  });
}
