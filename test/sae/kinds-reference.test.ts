// The float64 reference of the SAELens coder kinds' training step (kindStepReference) against
// PyTorch autograd of SAELens's formulas (test/fixtures/kinds, scripts/make-kinds-fixtures.py):
// latents, reconstruction, every loss term, every gradient (custom JumpReLU / step backward
// included), BatchTopK's threshold update, and with dead latents AuxK (batchtopk, Matryoshka over
// BatchTopK and TopK) and JumpReLU's pre-act loss. The kernels of these kinds are tested against it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { kindStepReference, readSafetensorsHeader, readSafetensorsRaw, type KindSpec } from '@sparsify/core';

const FIX = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'kinds');

function load(name: string): { t: Map<string, Float64Array>; meta: Record<string, string>; shape: (k: string) => number[] } {
  const path = join(FIX, `${name}.safetensors`);
  const raw = readSafetensorsRaw(path);
  const t = new Map<string, Float64Array>();
  for (const [k, v] of raw.tensors) {
    assert.equal(v.dtype, 'F64', k);
    t.set(k, new Float64Array(v.data.buffer.slice(v.data.byteOffset, v.data.byteOffset + v.data.byteLength)));
  }
  const header = readSafetensorsHeader(path);
  return { t, meta: raw.metadata ?? {}, shape: (k) => [...header.tensors.get(k)!.shape] };
}

function close(got: Float64Array | number[], want: Float64Array, what: string, tol = 1e-10): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 1e-12;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= tol * scale, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

const SPECS: Record<string, (m: Record<string, string>) => KindSpec> = {
  relu_l1: (m) => ({ kind: 'relu', l1Coefficient: Number(m.l1_coefficient) }),
  relu_lp2: (m) => ({ kind: 'relu', l1Coefficient: Number(m.l1_coefficient), lpNorm: Number(m.lp_norm) }),
  relu_lp1_5: (m) => ({ kind: 'relu', l1Coefficient: Number(m.l1_coefficient), lpNorm: Number(m.lp_norm) }),
  jumprelu_step: (m) => ({ kind: 'jumprelu', bandwidth: Number(m.bandwidth), sparsityLoss: 'step', l0Coefficient: Number(m.l0_coefficient) }),
  jumprelu_tanh: (m) => ({ kind: 'jumprelu', bandwidth: Number(m.bandwidth), sparsityLoss: 'tanh', l0Coefficient: Number(m.l0_coefficient), tanhScale: Number(m.tanh_scale) }),
  batchtopk: (m) => ({ kind: 'batchtopk', k: Number(m.k), thresholdLr: Number(m.threshold_lr), threshold: Number(m.threshold_before) }),
  matryoshka: (m) => ({ kind: 'matryoshka', k: Number(m.k), thresholdLr: Number(m.threshold_lr), threshold: Number(m.threshold_before), widths: JSON.parse(m.widths) }),
  batchtopk_auxk: (m) => ({ kind: 'batchtopk', k: Number(m.k), thresholdLr: Number(m.threshold_lr), threshold: Number(m.threshold_before), auxCoefficient: Number(m.aux_loss_coefficient) }),
  matryoshka_auxk: (m) => ({
    kind: 'matryoshka', k: Number(m.k), thresholdLr: Number(m.threshold_lr), threshold: Number(m.threshold_before), widths: JSON.parse(m.widths),
    auxCoefficient: Number(m.aux_loss_coefficient),
  }),
  topk_matryoshka_auxk: (m) => ({ kind: 'matryoshka', perRow: true, k: Number(m.k), thresholdLr: 0, threshold: 0, widths: JSON.parse(m.widths), auxCoefficient: Number(m.aux_loss_coefficient) }),
  jumprelu_preact: (m) => ({
    kind: 'jumprelu', bandwidth: Number(m.bandwidth), sparsityLoss: 'step', l0Coefficient: Number(m.l0_coefficient), preActCoefficient: Number(m.pre_act_loss_coefficient),
  }),
};

for (const [name, specOf] of Object.entries(SPECS)) {
  test(`${name}: float64 reference step equals PyTorch autograd of SAELens's formulas`, () => {
    const { t, meta, shape } = load(name);
    const dead = t.get('dead');
    const spec = { ...specOf(meta), ...(dead ? { dead } : {}) } as KindSpec;
    assert.equal(spec.kind === 'matryoshka' && spec.perRow ? 'topk' : spec.kind, meta.kind);
    const N = shape('x')[0];
    const r = kindStepReference(
      { encW: t.get('encoder.weight')!, encB: t.get('encoder.bias')!, W_dec: t.get('W_dec')!, b_dec: t.get('b_dec')!, logThreshold: t.get('log_threshold') },
      t.get('x')!, N, spec,
    );
    close(r.latents, t.get('latents')!, 'latents');
    let nz = 0;
    for (const v of r.latents) nz += v > 0 ? 1 : 0;
    assert.ok(nz > 0 && nz < r.latents.length, 'some latents fire, not all');
    close(r.saeOut, t.get('sae_out')!, 'sae_out');
    close([r.mse], t.get('mse')!, 'mse');
    close([r.sparsity], t.get('sparsity')!, 'sparsity term');
    close([r.loss], t.get('loss')!, 'loss');
    if (dead) {
      const M = dead.length, D = shape('x')[1];
      const numDead = dead.reduce((a, v) => a + v, 0);
      assert.ok(numDead > 0 && numDead < M, 'some latents are dead, not all');
      // AuxK's scale min(num_dead / (D // 2), 1): below 1 in matryoshka_auxk only.
      if (name !== 'jumprelu_preact') assert.equal(numDead < Math.floor(D / 2), name === 'matryoshka_auxk', 'AuxK at full scale and below it');
      assert.ok(t.get('aux')![0] > 0, 'the dead-latent term is not 0');
      close([r.aux], t.get('aux')!, 'dead-latent term');
    } else assert.equal(r.aux, 0, 'no dead-latent term without dead latents');
    close(r.grads.encW, t.get('grad.encoder.weight')!, 'grad encoder.weight');
    close(r.grads.encB, t.get('grad.encoder.bias')!, 'grad encoder.bias');
    close(r.grads.W_dec, t.get('grad.W_dec')!, 'grad W_dec');
    close(r.grads.b_dec, t.get('grad.b_dec')!, 'grad b_dec');
    if (spec.kind === 'jumprelu') {
      const g = t.get('grad.log_threshold')!;
      assert.ok(g.some((v) => v !== 0), 'the threshold gets a gradient');
      close(r.grads.logThreshold!, g, 'grad log_threshold');
    }
    if ((spec.kind === 'batchtopk' || spec.kind === 'matryoshka') && !spec.perRow) {
      close([r.thresholdAfter!], t.get('threshold_after')!, 'threshold after the update');
      assert.equal(nz, Math.floor(spec.k * N), 'floor(k * N) latents over the batch');
    }
  });
}
