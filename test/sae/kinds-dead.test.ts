// Dead-latent terms of the SAELens kinds in a SparseCoder: AuxK (batchtopk, Matryoshka over
// BatchTopK and over TopK; SAELens aux_loss_coefficient) and JumpReLU's pre-act loss
// (pre_act_loss_coefficient), from an explicit mask and from the coder's own dead-latent counters,
// against the float64 reference (kinds/reference.ts, itself checked against PyTorch in
// kinds-reference.test.ts); the terms are off without dead latents or with coefficient 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { kindStepReference, Tensor, ValueError, type KindSpec, type SparseCoderConfig } from '@sparsify/core';

import { randomKindCoder } from './kind-coders.js';

const N = 24, D = 8, M = 32;

interface Case {
  name: string;
  cfg: Partial<SparseCoderConfig>;
  spec: (theta: number, coef: number, dead: Int32Array) => KindSpec;
  coefKey: 'auxLossCoefficient' | 'preActLossCoefficient';
}

const CASES: Case[] = [
  {
    name: 'batchtopk', cfg: { activation: 'batchtopk', k: 3, topkThresholdLr: 0.1 }, coefKey: 'auxLossCoefficient',
    spec: (t, c, dead) => ({ kind: 'batchtopk', k: 3, thresholdLr: 0.1, threshold: t, auxCoefficient: c, dead }),
  },
  {
    name: 'matryoshka-batchtopk', cfg: { activation: 'batchtopk', k: 3, topkThresholdLr: 0.1, matryoshkaPrefixes: [4, 12, 32] }, coefKey: 'auxLossCoefficient',
    spec: (t, c, dead) => ({ kind: 'matryoshka', k: 3, thresholdLr: 0.1, threshold: t, widths: [4, 12, 32], auxCoefficient: c, dead }),
  },
  {
    name: 'matryoshka-topk', cfg: { activation: 'topk', k: 3, matryoshkaPrefixes: [4, 12] }, coefKey: 'auxLossCoefficient',
    spec: (_t, c, dead) => ({ kind: 'matryoshka', k: 3, thresholdLr: 0, threshold: 0, widths: [4, 12], perRow: true, auxCoefficient: c, dead }),
  },
  {
    name: 'batchtopk-no-bdec', cfg: { activation: 'batchtopk', k: 3, topkThresholdLr: 0.1, applyBDecToInput: false }, coefKey: 'auxLossCoefficient',
    spec: (t, c, dead) => ({ kind: 'batchtopk', k: 3, thresholdLr: 0.1, threshold: t, auxCoefficient: c, dead, applyBDecToInput: false }),
  },
  {
    name: 'jumprelu-step', cfg: { activation: 'jumprelu', jumpreluBandwidth: 0.5 }, coefKey: 'preActLossCoefficient',
    spec: (_t, c, dead) => ({ kind: 'jumprelu', bandwidth: 0.5, sparsityLoss: 'step', l0Coefficient: 0.2, preActCoefficient: c, dead }),
  },
  {
    name: 'jumprelu-tanh-no-bdec', cfg: { activation: 'jumprelu', jumpreluBandwidth: 0.5, jumpreluSparsityLossMode: 'tanh', applyBDecToInput: false },
    coefKey: 'preActLossCoefficient',
    spec: (_t, c, dead) => ({ kind: 'jumprelu', bandwidth: 0.5, sparsityLoss: 'tanh', tanhScale: 4, l0Coefficient: 0.2, preActCoefficient: c, dead, applyBDecToInput: false }),
  },
];

const setup = (c: Case, seed = 3) => randomKindCoder(c.cfg, { N, D, M }, seed);

const f64 = (t: Tensor) => Float64Array.from(t.toFloat32Array());

function close(got: Float32Array, want: Float64Array, what: string, tol: number): void {
  let scale = 1e-12;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= tol * scale, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

/** Every 3rd latent dead (11 of 32: AuxK at full scale, k_aux = D / 2 = 4), or just two (scale 2/4). */
const deadMasks: Record<string, Int32Array> = {
  many: Int32Array.from({ length: M }, (_, m) => (m % 3 === 1 ? 1 : 0)),
  two: Int32Array.from({ length: M }, (_, m) => (m === 5 || m === 20 ? 1 : 0)),
};

for (const c of CASES)
  for (const [maskName, dead] of Object.entries(deadMasks))
    for (const source of ['deadMask', 'counters'] as const) {
      test(`${c.name}: the dead-latent term (${maskName} dead, ${source}) equals the float64 reference`, async () => {
        const { coder, x } = await setup(c);
        const p = coder.params();
        const coef = 0.7;
        const ref = kindStepReference(
          { encW: f64(p.get('encoder.weight')!), encB: f64(p.get('encoder.bias')!), W_dec: f64(p.get('W_dec')!), b_dec: f64(p.get('b_dec')!), ...(p.has('log_threshold') ? { logThreshold: f64(p.get('log_threshold')!) } : {}) },
          f64(x), N, c.spec(coder.topkThreshold ?? 0, coef, dead),
        );
        assert.ok(ref.aux > 0, 'the case reaches the dead-latent term');
        let opts: { deadMask?: Uint8Array; deadFromCounters?: boolean };
        if (source === 'deadMask') opts = { deadMask: Uint8Array.from(dead) };
        else {
          // Counters above the threshold (tokens) for the dead latents, at or below it for the others.
          await coder.loadDeadLatents(1000, Float64Array.from(dead, (v, m) => (v ? 1001 + m : m % 2 ? 1000 : 0)));
          opts = { deadFromCounters: true };
        }
        const L = await coder.forwardBackward(x, { auxkAlpha: 0, l0Coefficient: 0.2, [c.coefKey]: coef, ...opts });
        const got = c.coefKey === 'auxLossCoefficient' ? L.auxkLoss : L.preActLoss!;
        assert.ok(Math.abs(got - ref.aux) <= 1e-5 * ref.aux, `dead-latent term ${got} vs ${ref.aux}`);
        assert.ok(Math.abs(L.loss - ref.loss) <= 1e-5 * ref.loss, `loss ${L.loss} vs ${ref.loss}`);
        const g = coder.grads();
        close(g.get('encoder.weight')!.toFloat32Array(), ref.grads.encW, 'grad encoder.weight', 1e-4);
        close(g.get('encoder.bias')!.toFloat32Array(), ref.grads.encB, 'grad encoder.bias', 1e-4);
        close(g.get('W_dec')!.toFloat32Array(), ref.grads.W_dec, 'grad W_dec', 1e-4);
        close(g.get('b_dec')!.toFloat32Array(), ref.grads.b_dec, 'grad b_dec', 1e-4);
        if (ref.grads.logThreshold) close(g.get('log_threshold')!.toFloat32Array(), ref.grads.logThreshold, 'grad log_threshold', 1e-4);
        coder.dispose();
      });
    }

test('the dead-latent terms are off without dead latents, with coefficient 0, and pre_act by default', async () => {
  for (const c of CASES) {
    const runs: number[][] = [];
    for (const opts of [{}, { deadMask: new Uint8Array(M) }, { deadMask: Uint8Array.from(deadMasks.many), [c.coefKey]: 0 }, ...(c.coefKey === 'preActLossCoefficient' ? [{ deadMask: Uint8Array.from(deadMasks.many) }] : [])]) {
      const { coder, x } = await setup(c);
      const L = await coder.forwardBackward(x, { auxkAlpha: 0, l0Coefficient: 0.2, ...opts });
      assert.equal(c.coefKey === 'auxLossCoefficient' ? L.auxkLoss : (L.preActLoss ?? 0), 0, `${c.name} ${JSON.stringify(Object.keys(opts))}`);
      runs.push([L.loss, ...coder.grads().get('encoder.weight')!.toFloat32Array()]);
      coder.dispose();
    }
    for (const r of runs.slice(1)) assert.deepEqual(r, runs[0], `${c.name}: same step as without the term`);
  }
});

test('AuxK defaults to aux_loss_coefficient 1 and scales linearly with it', async () => {
  const c = CASES[0];
  const losses: number[] = [];
  for (const coef of [undefined, 1, 2]) {
    const { coder, x } = await setup(c);
    const L = await coder.forwardBackward(x, { auxkAlpha: 0, deadMask: Uint8Array.from(deadMasks.many), ...(coef === undefined ? {} : { auxLossCoefficient: coef }) });
    losses.push(L.auxkLoss);
    coder.dispose();
  }
  assert.ok(losses[0] > 0);
  assert.equal(losses[0], losses[1]);
  assert.ok(Math.abs(losses[2] - 2 * losses[1]) <= 1e-6 * losses[2]);
});

test('dead-latent terms: typed errors', async () => {
  const { coder, x } = await setup(CASES[0]);
  await assert.rejects(coder.forwardBackward(x, { auxkAlpha: 0.1 }), (e: Error) => e instanceof ValueError && /aux_loss_coefficient/.test(e.message));
  await assert.rejects(coder.forwardBackward(x, { auxkAlpha: 0, deadMask: new Uint8Array(M - 1) }), (e: Error) => e instanceof ValueError && /dead mask has 31/.test(e.message));
  await assert.rejects(coder.forwardBackward(x, { auxkAlpha: 0, auxLossCoefficient: -1 }), (e: Error) => e instanceof ValueError && /auxLossCoefficient/.test(e.message));
  await assert.rejects(coder.forwardBackward(x, { auxkAlpha: 0, deadMask: new Uint8Array(M), deadFromCounters: true }), ValueError);
  coder.dispose();
  const j = await setup(CASES[4]);
  await assert.rejects(j.coder.forwardBackward(j.x, { auxkAlpha: 0, preActLossCoefficient: Number.NaN }), (e: Error) => e instanceof ValueError && /preActLossCoefficient/.test(e.message));
  j.coder.dispose();
});
