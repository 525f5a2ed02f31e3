// The dead-latent terms of the kind steps on the device (native/cuda/batchtopk_step.cu: SAELens's
// AuxK for BatchTopK, Matryoshka BatchTopK and Matryoshka TopK; native/cuda/threshold_step.cu:
// JumpReLU's pre-act loss) against the CPU kernels and the float64 reference (kinds/reference.ts),
// on fresh random inputs (seed printed; SPARSIFY_TEST_SEED=... reproduces), with many dead latents
// (AuxK at full scale) and two (scale 2 / (D / 2)), the mask on the host or the device; and a
// SparseCoder on cuda taking its mask from its own dead-latent counters, against cpu. Skipped,
// with the reason, without a CUDA device (node scripts/test.mjs --emu runs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { kindStepReference, mulberry32, SparseCoder, sparseCoderConfig, Tensor, thresholdOps, type KindSpec, type SparseCoderConfig } from '@sparsify/core';

import { cudaAddon } from './cuda-env.js';
import { randn, rng } from './reference.js';

const { skip } = cudaAddon();
const opts = { skip: skip ?? false };
const seed = Number(process.env.SPARSIFY_TEST_SEED ?? Math.floor(Math.random() * 1e9));
const tag = `(seed ${seed})`;
type Set = thresholdOps.ThresholdStepTensors;
const KEYS = ['encW', 'encB', 'W_dec', 'b_dec', 'logThreshold'] as const;

function params(N: number, D: number, M: number, r: () => number) {
  const f = (a: ArrayLike<number>, s = 1, b = 0) => Float32Array.from(a, (v) => v * s + b);
  return {
    N, D, M,
    p: {
      encW: f(randn(M * D, r), 1 / Math.sqrt(D)),
      encB: f(randn(M, r), 0.2),
      W_dec: f(randn(M * D, r), 1 / Math.sqrt(D)),
      b_dec: f(randn(D, r), 0.1),
      logThreshold: f(randn(M, r), 0.3, Math.log(0.3)),
    },
    x: f(randn(N * D, r)),
  };
}
type Params = ReturnType<typeof params>;

const tensors = (c: Params, jump: boolean): Set => {
  const s: Set = { encW: Tensor.from(c.p.encW, [c.M, c.D]), encB: Tensor.from(c.p.encB, [c.M]), W_dec: Tensor.from(c.p.W_dec, [c.M, c.D]), b_dec: Tensor.from(c.p.b_dec, [c.D]) };
  if (jump) s.logThreshold = Tensor.from(c.p.logThreshold, [c.M]);
  return s;
};
const zeros = (c: Params, jump: boolean): Set => {
  const s: Set = { encW: Tensor.zeros([c.M, c.D]), encB: Tensor.zeros([c.M]), W_dec: Tensor.zeros([c.M, c.D]), b_dec: Tensor.zeros([c.D]) };
  if (jump) s.logThreshold = Tensor.zeros([c.M]);
  return s;
};
const f64 = (a: Float32Array) => Float64Array.from(a);

function close(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  let scale = 1e-12;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++)
    assert.ok(Math.abs(got[i] - want[i]) <= tol * scale, `${what}[${i}]: ${got[i]} vs ${want[i]} (tol ${tol} x ${scale}) ${tag}`);
}

const CASES: { name: string; jump: boolean; spec: (dead: Int32Array) => KindSpec; o: (dead: Tensor) => Record<string, unknown> }[] = [
  {
    name: 'batchtopk AuxK', jump: false,
    spec: (dead) => ({ kind: 'batchtopk', k: 3.5, thresholdLr: 0, threshold: 0, auxCoefficient: 0.8, dead }),
    o: (dead) => ({ k: 3.5, auxCoefficient: 0.8, dead }),
  },
  {
    name: 'matryoshka batchtopk AuxK (no b_dec on the input)', jump: false,
    spec: (dead) => ({ kind: 'matryoshka', k: 3, thresholdLr: 0, threshold: 0, widths: [5, 21], auxCoefficient: 1, dead, applyBDecToInput: false }),
    o: (dead) => ({ k: 3, widths: [5, 21], auxCoefficient: 1, dead, applyBDecToInput: false }),
  },
  {
    name: 'matryoshka topk AuxK', jump: false,
    spec: (dead) => ({ kind: 'matryoshka', perRow: true, k: 3, thresholdLr: 0, threshold: 0, widths: [7], auxCoefficient: 1.3, dead }),
    o: (dead) => ({ k: 3, perRow: true, widths: [7], auxCoefficient: 1.3, dead }),
  },
  {
    name: 'jumprelu step pre-act loss', jump: true,
    spec: (dead) => ({ kind: 'jumprelu', bandwidth: 0.5, sparsityLoss: 'step', l0Coefficient: 0.2, preActCoefficient: 0.4, dead }),
    o: (dead) => ({ kind: 'jumprelu', bandwidth: 0.5, sparsityLoss: 'step', l0Coefficient: 0.2, preActCoefficient: 0.4, dead }),
  },
  {
    name: 'jumprelu tanh pre-act loss (no b_dec on the input)', jump: true,
    spec: (dead) => ({ kind: 'jumprelu', bandwidth: 0.5, sparsityLoss: 'tanh', tanhScale: 4, l0Coefficient: 0.2, preActCoefficient: 0.4, dead, applyBDecToInput: false }),
    o: (dead) => ({ kind: 'jumprelu', bandwidth: 0.5, sparsityLoss: 'tanh', tanhScale: 4, l0Coefficient: 0.2, preActCoefficient: 0.4, dead, applyBDecToInput: false }),
  },
];

for (const c of CASES) {
  test(`${c.name}: CUDA step equals the CPU kernel and the float64 reference`, opts, async () => {
    const r = rng(seed + c.name.length);
    for (const [N, D, M] of [[37, 20, 70], [3, 9, 33]])
      for (const few of [false, true])
        for (const deviceMask of few ? [false] : [false, true]) {
          const p = params(N, D, M, r);
          const dead = Int32Array.from({ length: M }, (_, m) => (few ? (m === 2 || m === M - 1 ? 1 : 0) : r() < 0.35 ? 1 : 0));
          const ref = kindStepReference(
            { encW: f64(p.p.encW), encB: f64(p.p.encB), W_dec: f64(p.p.W_dec), b_dec: f64(p.p.b_dec), ...(c.jump ? { logThreshold: f64(p.p.logThreshold) } : {}) },
            f64(p.x), N, c.spec(dead),
          );
          const at = `${N}x${D}x${M} ${few ? 'two dead' : 'many dead'}${deviceMask ? ', mask on the device' : ''}`;
          assert.ok(ref.aux > 0, `${at}: the case reaches the dead-latent term`);
          const step = (x: Tensor, g: Set, mask: Tensor) =>
            c.jump ? thresholdOps.thresholdStep(tensors(p, true), g, x, c.o(mask) as unknown as thresholdOps.ThresholdStepOptions)
              : thresholdOps.batchTopKStep(tensors(p, false), g, x, c.o(mask) as unknown as thresholdOps.BatchTopKStepOptions);
          const gc = zeros(p, c.jump), gg = zeros(p, c.jump);
          const hostMask = Tensor.from(dead, [M], { dtype: 'int32' });
          const Lc = await step(Tensor.from(p.x, [N, D]), gc, hostMask);
          const Lg = await step(Tensor.from(p.x, [N, D], { device: 'cuda' }), gg, deviceMask ? await hostMask.to('cuda') : hostMask);
          for (const [L, who] of [[Lg, 'cuda'], [Lc, 'cpu']] as const) {
            const aux = 'aux' in L ? L.aux : L.preAct;
            assert.ok(Math.abs(aux - ref.aux) <= 1e-5 * ref.aux, `${who} ${at} dead-latent term ${aux} vs ${ref.aux} ${tag}`);
            assert.ok(Math.abs(L.loss - ref.loss) <= 1e-5 * ref.loss, `${who} ${at} loss ${L.loss} vs ${ref.loss} ${tag}`);
          }
          for (const k of KEYS) {
            if (!gg[k]) continue;
            const a = gg[k]!.toFloat32Array(), b = gc[k]!.toFloat32Array();
            close(`${at} cuda grad ${k} vs reference`, a, ref.grads[k as keyof typeof ref.grads]!, 1e-4);
            close(`${at} cuda grad ${k} vs cpu`, a, b, 1e-4);
          }
        }
  });
}

// More dead latents than row_topk's block (256) and k_aux = D / 2 > 32, with dead latents in
// groups of five identical copies (encoder row, bias, decoder row): scores tie in fives, so the
// k_aux-th place falls inside a group and the lower-latent rule decides which copies are kept
// (row_topk's second radix select, over the latents) — visible in which rows get the gradient.
for (const c of CASES.filter((c) => !c.jump)) {
  test(`${c.name}: ties among more than 256 dead latents with k_aux above 32 on CUDA equal the CPU kernel and the reference`, opts, async () => {
    const r = rng(seed + 7 * c.name.length);
    const N = 6, D = 72, M = 320, ka = D / 2; // 36 = 7·5 + 1: never a whole number of groups
    const p = params(N, D, M, r);
    const dead = Int32Array.from({ length: M }, (_, m) => (m % 10 === 3 ? 0 : 1));
    const deadList = [...dead.keys()].filter((m) => dead[m]);
    assert.ok(deadList.length > 256 && ka > 32);
    deadList.forEach((m, j) => {
      const src = deadList[j - (j % 5)];
      p.p.encW.copyWithin(m * D, src * D, src * D + D);
      p.p.W_dec.copyWithin(m * D, src * D, src * D + D);
      p.p.encB[m] = p.p.encB[src];
    });
    // The case is what it claims: some row's k_aux-th and next dead scores tie (float64).
    let boundaryTie = false;
    for (let n = 0; n < N; n++) {
      const sc = deadList.map((m) => {
        let h = p.p.encB[m], q = 0;
        for (let d = 0; d < D; d++) {
          h += (p.x[n * D + d] - p.p.b_dec[d]) * p.p.encW[m * D + d];
          q += p.p.W_dec[m * D + d] ** 2;
        }
        return h * Math.sqrt(q);
      }).sort((a, b) => b - a);
      if (sc[ka - 1] === sc[ka]) boundaryTie = true;
    }
    assert.ok(boundaryTie, `a tie crosses the k_aux boundary ${tag}`);
    const ref = kindStepReference({ encW: f64(p.p.encW), encB: f64(p.p.encB), W_dec: f64(p.p.W_dec), b_dec: f64(p.p.b_dec) }, f64(p.x), N, c.spec(dead));
    assert.ok(ref.aux > 0);
    const hostMask = Tensor.from(dead, [M], { dtype: 'int32' });
    const gc = zeros(p, false), gg = zeros(p, false);
    const Lc = await thresholdOps.batchTopKStep(tensors(p, false), gc, Tensor.from(p.x, [N, D]), c.o(hostMask) as unknown as thresholdOps.BatchTopKStepOptions);
    const Lg = await thresholdOps.batchTopKStep(tensors(p, false), gg, Tensor.from(p.x, [N, D], { device: 'cuda' }), c.o(hostMask) as unknown as thresholdOps.BatchTopKStepOptions);
    for (const [L, who] of [[Lg, 'cuda'], [Lc, 'cpu']] as const) {
      assert.ok(Math.abs(L.aux - ref.aux) <= 1e-5 * ref.aux, `${who} AuxK ${L.aux} vs ${ref.aux} ${tag}`);
      assert.ok(Math.abs(L.loss - ref.loss) <= 1e-5 * ref.loss, `${who} loss ${L.loss} vs ${ref.loss} ${tag}`);
    }
    for (const k of ['encW', 'encB', 'W_dec', 'b_dec'] as const) {
      const a = gg[k]!.toFloat32Array();
      close(`cuda grad ${k} vs reference`, a, ref.grads[k]!, 1e-4);
      close(`cuda grad ${k} vs cpu`, a, gc[k]!.toFloat32Array(), 1e-4);
    }
  });
}

const CODERS: { name: string; cfg: Partial<SparseCoderConfig>; coef: Record<string, number> }[] = [
  { name: 'batchtopk', cfg: { activation: 'batchtopk', k: 3, topkThresholdLr: 0.1 }, coef: { auxLossCoefficient: 0.9 } },
  { name: 'matryoshka-topk', cfg: { activation: 'topk', k: 3, matryoshkaPrefixes: [4, 12] }, coef: {} },
  { name: 'jumprelu', cfg: { activation: 'jumprelu', jumpreluBandwidth: 0.5 }, coef: { l0Coefficient: 0.2, preActLossCoefficient: 0.5 } },
];

for (const c of CODERS) {
  test(`${c.name}: SparseCoder on cuda with deadFromCounters equals cpu (two micro-batches)`, opts, async () => {
    const N = 40, D = 12, M = 48;
    const cfg = sparseCoderConfig({ numLatents: M, ...c.cfg });
    const make = (device: 'cpu' | 'cuda') => {
      const r = mulberry32(5);
      const g = (n: number, s: number, b = 0) => Float32Array.from(randn(n, r), (v) => v * s + b);
      const t = new Map<string, Tensor>([
        ['encoder.weight', Tensor.from(g(M * D, 0.5), [M, D])],
        ['encoder.bias', Tensor.from(g(M, 0.3), [M])],
        ['W_dec', Tensor.from(g(M * D, 0.4), [M, D])],
        ['b_dec', Tensor.from(g(D, 0.2), [D])],
      ]);
      if (cfg.activation === 'jumprelu') t.set('log_threshold', Tensor.from(g(M, 0.3, Math.log(0.4)), [M]));
      return SparseCoder.fromParams(cfg, D, t, device);
    };
    const cpu = await make('cpu'), gpu = await make('cuda');
    const counts = Float64Array.from({ length: M }, (_, m) => (m % 4 === 1 ? 500 + m : m));
    await cpu.loadDeadLatents(100, counts);
    await gpu.loadDeadLatents(100, counts);
    const x = Tensor.from(randn(N * D, rng(seed + 3)), [N, D]);
    for (const rows of [[0, 25], [25, N]] as [number, number][]) {
      const step = { auxkAlpha: 0, deadFromCounters: true, trackFired: true, rows, batchVariance: true, lossScale: 0.5, ...c.coef };
      const lc = await cpu.forwardBackward(x, step);
      const lg = await gpu.forwardBackward(x, step);
      const term = (l: typeof lc) => (cfg.activation === 'jumprelu' ? l.preActLoss! : l.auxkLoss);
      assert.ok(term(lc) > 0, `the dead-latent term is on ${tag}`);
      for (const [a, b, what] of [[lg.loss, lc.loss, 'loss'], [term(lg), term(lc), 'dead-latent term']] as const)
        assert.ok(Math.abs(a - b) <= 1e-5 * Math.abs(b), `${what} ${a} vs ${b} ${tag}`);
    }
    const gc = await cpu.readGrads(), gg = await gpu.readGrads();
    for (const [n, t] of gc) close(`grad ${n}`, gg.get(n)!.toFloat32Array(), t.toFloat32Array(), 1e-4);
    cpu.dispose();
    gpu.dispose();
  });
}
