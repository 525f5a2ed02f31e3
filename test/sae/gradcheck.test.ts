// The fast kernels against the float64 reference (losses, outputs, every gradient), and the
// reference's gradients against central finite differences of its own float64 loss, on small
// random coders of every kind (TopK, AuxK, Multi-TopK, GroupMax, transcoder, skip).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Rng, saeOps, Tensor, testing, type SparseCoderConfig } from '@sparsify/core';

import { M, randomCoder, relErr, relErrToMax } from './helpers.js';

const D = 16;
const N = 24;

const CASES: [string, Partial<SparseCoderConfig>, number][] = [
  ['topk', { k: 4 }, 0],
  ['topk + auxk', { k: 4 }, 0.5],
  ['multi_topk + auxk', { k: 4, multiTopk: true }, 0.5],
  ['groupmax + auxk', { k: 4, activation: 'groupmax' }, 0.5],
  ['transcoder + auxk', { k: 4, transcode: true }, 0.5],
  ['transcoder + skip + auxk', { k: 4, transcode: true, skipConnection: true }, 0.5],
  ['sae without decoder normalisation', { k: 3, normalizeDecoder: false }, 0.25],
];

for (const [name, cfg, alpha] of CASES) {
  test(`gradients: ${name}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sae-grad-'));
    try {
      const coder = await randomCoder(cfg, 7 + name.length, dir);
      const rng = new Rng(99);
      const x = Tensor.from(Float32Array.from({ length: N * D }, () => rng.normal()), [N, D]);
      const y = coder.cfg.transcode ? Tensor.from(Float32Array.from({ length: N * D }, () => rng.normal()), [N, D]) : undefined;
      const dead = Uint8Array.from({ length: M }, (_, i) => (i % 3 === 0 ? 1 : 0));
      const spec = { k: coder.cfg.k, groupmax: coder.cfg.activation === 'groupmax', transcode: coder.cfg.transcode, multiTopk: coder.cfg.multiTopk };
      const w = coder.weights();

      // forwardBackward renormalises decoder rows first (unit already), then adds grads.
      const r = await coder.forwardBackward(x, { y, deadMask: dead, auxkAlpha: alpha, lossScale: 1 });
      const ref = testing.saeReference(w, undefined, x, y, spec, { deadMask: dead, auxkAlpha: alpha, grads: true });
      assert.ok(relErr(r.loss, ref.loss) < 1e-5, `loss ${r.loss} vs ${ref.loss}`);
      assert.ok(relErr(r.fvu, ref.fvu) < 1e-5);
      if (alpha > 0) assert.ok(ref.auxkLoss > 0 && relErr(r.auxkLoss, ref.auxkLoss) < 1e-5, `auxk ${r.auxkLoss} vs ${ref.auxkLoss}`);
      if (coder.cfg.multiTopk) assert.ok(ref.multiTopkFvu > 0 && relErr(r.multiTopkFvu, ref.multiTopkFvu) < 1e-5);
      const grads = coder.grads();
      for (const [pname, g] of grads) {
        const e = relErrToMax(g.toFloat32Array(), ref.grads![pname]);
        assert.ok(e < 1e-5, `${pname}: kernel vs float64 reference ${e}`);
      }

      // Forward outputs too.
      const fw = await coder.forward(x, { y, deadMask: dead });
      assert.ok(relErrToMax(fw.saeOut.toFloat32Array(), ref.saeOut) < 1e-5);

      // Finite differences of the reference loss (detached paths frozen at w).
      const rngFd = new Rng(5);
      for (const [pname, param] of coder.params()) {
        const base = param.toFloat32Array();
        const gref = ref.grads![pname];
        let gmax = 0;
        for (const v of gref) gmax = Math.max(gmax, Math.abs(v));
        const picks = new Set<number>();
        // Entries with the largest gradients plus random ones.
        const order = [...gref.keys()].sort((a, b) => Math.abs(gref[b]) - Math.abs(gref[a]));
        for (const i of order.slice(0, 4)) picks.add(i);
        while (picks.size < 8) picks.add(Math.floor(rngFd.uniform() * base.length));
        for (const i of picks) {
          const lossAt = (v: number) => {
            const arr = base.slice();
            arr[i] = v;
            const t = Tensor.from(arr, param.shape);
            const key = { 'encoder.weight': 'encW', 'encoder.bias': 'encB', W_dec: 'W_dec', b_dec: 'b_dec', W_skip: 'W_skip' }[pname]!;
            const wp = { ...w, [key]: t };
            const l = testing.saeReference(wp, w, x, y, spec, { deadMask: dead, auxkAlpha: alpha }).loss;
            t.dispose();
            return { l, v: Math.fround(v) };
          };
          const h = 1e-3;
          const a = lossAt(base[i] + h);
          const b = lossAt(base[i] - h);
          const fd = (a.l - b.l) / (a.v - b.v);
          assert.ok(Math.abs(fd - gref[i]) <= 2e-3 * gmax + 1e-7, `${pname}[${i}]: finite difference ${fd} vs analytic ${gref[i]} (max ${gmax})`);
        }
      }
      coder.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('gradients accumulate (lossScale) and zeroGrad clears them; externally supplied total variance', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sae-acc-'));
  try {
    const coder = await randomCoder({ k: 4 }, 3, dir);
    const rng = new Rng(1);
    const x = Tensor.from(Float32Array.from({ length: N * D }, () => rng.normal()), [N, D]);
    await coder.forwardBackward(x, { auxkAlpha: 0 });
    const g1 = coder.grads().get('encoder.weight')!.toFloat32Array();
    coder.zeroGrad();
    assert.ok(coder.grads().get('W_dec')!.toFloat32Array().every((v) => v === 0));
    await coder.forwardBackward(x, { auxkAlpha: 0, lossScale: 0.5 });
    await coder.forwardBackward(x, { auxkAlpha: 0, lossScale: 0.5 });
    assert.ok(relErrToMax(coder.grads().get('encoder.weight')!.toFloat32Array(), g1) < 1e-6);
    const tv = (await coder.forward(x)).fvu;
    const r2 = await coder.forward(x, { totalVariance: 1 });
    const ref = testing.saeReference(coder.weights(), undefined, x, undefined, { k: 4, groupmax: false, transcode: false, multiTopk: false }, {});
    assert.ok(relErr(tv, ref.fvu) < 1e-5);
    assert.ok(relErr(r2.fvu, ref.fvu * (await totalVariance(x))) < 1e-5);
    const fired = Tensor.zeros([M], { dtype: 'int32' });
    await coder.forwardBackward(x, { auxkAlpha: 0, didFire: fired });
    const f = fired.toInt32Array();
    const fw = await coder.forward(x);
    const idx = fw.latentIndices.toInt32Array();
    for (let m = 0; m < M; m++) assert.equal(f[m], idx.includes(m) ? 1 : 0);
    coder.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

async function totalVariance(x: Tensor): Promise<number> {
  const a = x.toFloat32Array();
  let tv = 0;
  for (let d = 0; d < D; d++) {
    let mu = 0;
    for (let n = 0; n < N; n++) mu += a[n * D + d];
    mu /= N;
    for (let n = 0; n < N; n++) tv += (a[n * D + d] - mu) ** 2;
  }
  return tv;
}

test('results do not depend on the thread count (bitwise)', async () => {
  const { setNumThreads, numThreads } = await import('@sparsify/core');
  const before = numThreads();
  const dir = mkdtempSync(join(tmpdir(), 'sae-thr-'));
  try {
    const rng = new Rng(12);
    const x = Tensor.from(Float32Array.from({ length: 300 * D }, () => rng.normal()), [300, D]);
    const dead = Uint8Array.from({ length: M }, (_, i) => (i % 4 === 0 ? 1 : 0));
    const runs: Float32Array[][] = [];
    for (const t of [1, 2, 3]) {
      setNumThreads(t);
      const c = await randomCoder({ k: 4, multiTopk: true }, 5, join(dir, String(t)));
      const r = await c.forwardBackward(x, { auxkAlpha: 0.1, deadMask: dead });
      runs.push([...c.grads().values()].map((g) => g.toFloat32Array()).concat([Float32Array.of(r.loss)]));
      c.dispose();
    }
    for (const r of runs.slice(1)) r.forEach((a, i) => assert.deepEqual(a, runs[0][i]));
  } finally {
    setNumThreads(before);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('AuxK: the dense-GEMM route and the gather/scatter route agree', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sae-aux-'));
  try {
    const c = await randomCoder({ k: 4 }, 17, dir);
    const rng = new Rng(3);
    const x = Tensor.from(Float32Array.from({ length: 40 * D }, () => rng.normal()), [40, D]);
    const spec = { k: 4, groupmax: false, transcode: false, multiTopk: false };
    for (const nDead of [5, 30, 64]) {
      const dead = Uint8Array.from({ length: M }, (_, i) => (i < nDead ? 1 : 0));
      const grads = [0, 1].map(() => c.grads());
      const out: { loss: number; g: Float32Array[] }[] = [];
      for (const force of [false, true]) {
        c.zeroGrad();
        const r = await saeOps.saeStep(c.weights(), {
          encW: grads[0].get('encoder.weight')!, encB: grads[0].get('encoder.bias')!, W_dec: grads[0].get('W_dec')!, b_dec: grads[0].get('b_dec')!,
        }, x, undefined, spec, { deadMask: dead, auxkAlpha: 1, forceSparseAux: force });
        out.push({ loss: r.loss, g: [...c.grads().values()].map((t) => t.toFloat32Array()) });
      }
      assert.ok(relErr(out[0].loss, out[1].loss) < 1e-6, `${nDead} dead: loss`);
      out[0].g.forEach((g, i) => assert.ok(relErrToMax(g, out[1].g[i]) < 1e-5, `${nDead} dead: grad ${i}`));
    }
    c.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
