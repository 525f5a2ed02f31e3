// SparseCoder of each SAELens kind with device: 'cuda' (the kind kernels of
// native/cuda/threshold_step.cu / batchtopk_step.cu over the resident state's buffers) against the
// same coder on cpu: forwardBackward losses, gradients (log_threshold included), fired latents and
// the dead-latent counters they feed, BatchTopK's threshold, one Adam step (parameters and moments),
// inference encode; a host and a device batch. Kinds are f32 on both devices, so tolerances are
// f32-sized. Skipped, with the reason, without a CUDA device (node scripts/test.mjs --emu runs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createOptimizer, mulberry32, SparseCoder, sparseCoderConfig, Tensor, type SparseCoderConfig } from '@sparsify/core';

import { cudaAddon } from './cuda-env.js';

const { skip } = cudaAddon();
const opts = { skip: skip ?? false };
const N = 40, D = 12, M = 48;

function gauss(rng: () => number, n: number, s = 1, shift = 0): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = shift + s * Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  return out;
}

const CASES: { name: string; cfg: Partial<SparseCoderConfig>; coef: { l1Coefficient?: number; l0Coefficient?: number } }[] = [
  { name: 'relu', cfg: { activation: 'relu' }, coef: { l1Coefficient: 0.3 } },
  { name: 'relu-lp1.5', cfg: { activation: 'relu', lpNorm: 1.5 }, coef: { l1Coefficient: 0.3 } },
  { name: 'jumprelu-step', cfg: { activation: 'jumprelu', jumpreluBandwidth: 0.5 }, coef: { l0Coefficient: 0.2 } },
  { name: 'jumprelu-tanh', cfg: { activation: 'jumprelu', jumpreluBandwidth: 0.5, jumpreluSparsityLossMode: 'tanh', jumpreluTanhScale: 3 }, coef: { l0Coefficient: 0.2 } },
  { name: 'batchtopk', cfg: { activation: 'batchtopk', k: 3, topkThresholdLr: 0.1 }, coef: {} },
  { name: 'batchtopk-float-k', cfg: { activation: 'batchtopk', k: 2.6, topkThresholdLr: 0.1 }, coef: {} },
  { name: 'matryoshka', cfg: { activation: 'batchtopk', k: 3, topkThresholdLr: 0.1, matryoshkaPrefixes: [4, 12, M] }, coef: {} },
  { name: 'jumprelu-no-bdec', cfg: { activation: 'jumprelu', jumpreluBandwidth: 0.5, applyBDecToInput: false }, coef: { l0Coefficient: 0.2 } },
  { name: 'matryoshka-topk', cfg: { activation: 'topk', k: 3, matryoshkaPrefixes: [4, 12] }, coef: {} },
];

function params(cfg: SparseCoderConfig, seed: number): Map<string, Tensor> {
  const rng = mulberry32(seed);
  const t = new Map<string, Tensor>([
    ['encoder.weight', Tensor.from(gauss(rng, M * D, 0.5), [M, D])],
    // relu / jumprelu: a negative bias, so that some latents stay unfired in the batch.
    ['encoder.bias', Tensor.from(gauss(rng, M, 0.3, cfg.activation === 'relu' || cfg.activation === 'jumprelu' ? -4 : 0), [M])],
    ['W_dec', Tensor.from(gauss(rng, M * D, 0.4), [M, D])],
    ['b_dec', Tensor.from(gauss(rng, D, 0.2), [D])],
  ]);
  if (cfg.activation === 'jumprelu') t.set('log_threshold', Tensor.from(gauss(rng, M, 0.3).map((v) => Math.log(0.4) + v), [M]));
  if (cfg.activation === 'batchtopk') t.set('topk_threshold', Tensor.from(new Float32Array([0.25]), [1]));
  return t;
}

function close(what: string, got: Float32Array, want: Float32Array, tol: number): void {
  let scale = 1e-12;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= tol * scale, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}
const rel = (a: number, b: number, tol: number) => Math.abs(a - b) <= tol * Math.max(Math.abs(b), 1e-12);

for (const c of CASES) {
  for (const batchOn of ['cpu', 'cuda'] as const) {
    test(`${c.name} (${batchOn} batch): cuda forwardBackward + Adam step equal cpu`, opts, async () => {
      const cfg = sparseCoderConfig({ numLatents: M, ...c.cfg });
      const cpu = await SparseCoder.fromParams(cfg, D, params(cfg, 7), 'cpu');
      const gpu = await SparseCoder.fromParams(cfg, D, params(cfg, 7), 'cuda');
      const xh = Tensor.from(gauss(mulberry32(11), N * D), [N, D]);
      const xg = batchOn === 'cuda' ? await xh.to('cuda') : xh;
      await cpu.loadDeadLatents(5);
      await gpu.loadDeadLatents(5);
      const oc = createOptimizer('adam', [cpu], { lr: 1e-3 });
      const og = createOptimizer('adam', [gpu], { lr: 1e-3 });
      const p0 = new Map([...cpu.params()].map(([n, t]) => [n, t.toFloat32Array()]));
      // Two micro-batches (rows, batch variance) accumulate into the gradients.
      for (const rows of [[0, 25], [25, N]] as [number, number][]) {
        const step = { auxkAlpha: 0, trackFired: true, rows, batchVariance: true, lossScale: 0.5, ...c.coef };
        const lc = await cpu.forwardBackward(xh, step);
        const lg = await gpu.forwardBackward(xg, step);
        for (const k of ['loss', 'fvu', 'auxkLoss', 'multiTopkFvu'] as const) assert.ok(rel(lg[k], lc[k], 1e-5), `${k} ${lg[k]} vs ${lc[k]}`);
      }
      const gc = await cpu.readGrads(), gg = await gpu.readGrads();
      assert.deepEqual([...gg.keys()].sort(), [...gc.keys()].sort(), 'the same parameters have gradients');
      for (const [n, t] of gc) {
        const want = t.toFloat32Array();
        if (n === 'log_threshold') assert.ok(want.some((v) => v !== 0), 'the case reaches the threshold gradient');
        close(`grad ${n}`, gg.get(n)!.toFloat32Array(), want, 1e-4);
      }
      if (cfg.activation === 'batchtopk') assert.ok(rel(gpu.topkThreshold!, cpu.topkThreshold!, 1e-6), `threshold ${gpu.topkThreshold} vs ${cpu.topkThreshold}`);
      // The steps' fired marks are the state's: the dead-latent counters agree.
      const deadC = await cpu.updateDeadLatents(N), deadG = await gpu.updateDeadLatents(N);
      assert.equal(deadG, deadC, 'dead latents');
      assert.deepEqual([...(await gpu.readDeadLatents())], [...(await cpu.readDeadLatents())], 'dead-latent counters');
      const counts = await cpu.readDeadLatents();
      assert.ok(counts.some((v) => v === 0) && counts.some((v) => v === N), `some latents fired, some did not (${c.name})`);
      await oc.step();
      await og.step();
      await gpu.syncToHost();
      for (const [n, t] of cpu.params()) {
        const a = t.toFloat32Array(), b = gpu.params().get(n)!.toFloat32Array(), o = p0.get(n)!;
        if (n === 'topk_threshold') {
          assert.ok(rel(b[0], a[0], 1e-6), 'topk_threshold');
          continue;
        }
        // Adam's first step moves each entry by ~lr·sign(g): only a gradient within f32 noise of 0 may differ.
        let off = 0, moved = 0;
        for (let i = 0; i < a.length; i++) {
          if (Math.abs(b[i] - a[i]) > 1e-3 * 0.01) off++;
          if (a[i] !== o[i]) moved++;
        }
        assert.ok(off <= 0.01 * a.length, `${n}: ${off}/${a.length} entries differ after the Adam step`);
        if (n === 'log_threshold') assert.ok(moved > 0, 'log_threshold is trained');
      }
      const sc = await oc.readStateDict(), sg = await og.readStateDict();
      assert.deepEqual([...sg.tensors.keys()].sort(), [...sc.tensors.keys()].sort(), 'moments of the same parameters');
      for (const [key, t] of sc.tensors) if (/exp_avg$/.test(key)) close(key, sg.tensors.get(key)!.toFloat32Array(), t.toFloat32Array(), 1e-4);
      // Inference encode after the step (host copy of the new parameters).
      const ec = await cpu.encode(xh), eg = await gpu.encode(xg);
      const ac = ec.topActs.toFloat32Array(), ag = (eg.topActs.device === 'cpu' ? eg.topActs : await eg.topActs.to('cpu')).toFloat32Array();
      assert.equal(ag.length, ac.length, 'encode widths');
      close('encode acts', ag, ac, 1e-4);
      for (const t of [...sc.tensors.values(), ...sg.tensors.values(), ...gc.values(), ...gg.values()]) t.dispose();
      oc.dispose();
      og.dispose();
      cpu.dispose();
      gpu.dispose();
    });
  }
}
