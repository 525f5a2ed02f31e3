// Gradient-norm clipping in the CUDA state's optimizer step (native/cuda/grad_clip.cu): the norm it
// reports and the update it applies follow the float64 chain projection -> clip -> Adam over the
// device's own gradients, and agree with the CPU state on the same coder. Skipped without a CUDA
// build and a device (the emulated device runs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { createOptimizer, native, SparseCoder } from '@sparsify/core';

import { FIXTURES as SAE_FIXTURES, loadGolden, relErrToMax } from '../sae/helpers.js';
import { cudaAddon } from './cuda-env.js';

const { skip } = cudaAddon();
const opts = { skip: skip ?? false };

function project(g: Float32Array, w: Float32Array, rows: number, cols: number): Float32Array {
  const out = g.slice();
  for (let r = 0; r < rows; r++) {
    let c = 0;
    for (let j = 0; j < cols; j++) c += g[r * cols + j] * w[r * cols + j];
    for (let j = 0; j < cols; j++) out[r * cols + j] -= c * w[r * cols + j];
  }
  return out;
}

for (const variant of ['sae_d64_k8', 'transcoder_d64_k8_skip']) {
  test(`cuda adam with maxGradNorm (${variant}): norm and update as the float64 chain; close to the CPU state`, opts, async () => {
    const dir = join(SAE_FIXTURES, variant, 'state');
    const x = loadGolden(variant).get('x')!;
    const gpu = await SparseCoder.loadFromDisk(dir, { device: 'cuda' });
    const cpu = await SparseCoder.loadFromDisk(dir);
    const maxGradNorm = 1e-3;
    const og = createOptimizer('adam', [gpu], { lr: 1e-3, maxGradNorm });
    const oc = createOptimizer('adam', [cpu], { lr: 1e-3, maxGradNorm });
    const m = new Map<string, Float64Array>(), v = new Map<string, Float64Array>();
    for (let step = 1; step <= 2; step++) {
      await gpu.forwardBackward(x, { auxkAlpha: 0 });
      await cpu.forwardBackward(x, { auxkAlpha: 0 });
      await gpu.syncToHost();
      const p0 = new Map([...gpu.params()].map(([k, t]) => [k, t.toFloat32Array()]));
      const grads = await gpu.readGrads();
      const names = [...grads.keys()];
      const [Mr, D] = gpu.params().get('W_dec')!.shape;
      const gs = names.map((k) => {
        const g = grads.get(k)!.toFloat32Array();
        return Float64Array.from(k === 'W_dec' && gpu.projectsDecoderGrad ? project(g, p0.get('W_dec')!, Mr, D) : g);
      });
      for (const t of grads.values()) t.dispose();
      const ref = native().testing.gradClipReference(gs, maxGradNorm);
      assert.ok(ref.norm > maxGradNorm, `the test clips (norm ${ref.norm})`);
      await og.step();
      await oc.step();
      const got = og.lastGradNorms[0]!;
      assert.ok(Math.abs(got - ref.norm) < 1e-5 * ref.norm, `step ${step}: device norm ${got} vs ${ref.norm}`);
      const cpuNorm = oc.lastGradNorms[0]!;
      assert.ok(Math.abs(got - cpuNorm) < 5e-2 * cpuNorm, `step ${step}: device norm ${got} vs cpu ${cpuNorm} (bf16 forward)`);
      await gpu.syncToHost();
      names.forEach((name, i) => {
        const g = ref.grads[i];
        const r = native().testing.optimReference('adam', { p: Float64Array.from(p0.get(name)!), g, s0: m.get(name) ?? new Float64Array(g.length), s1: v.get(name) ?? new Float64Array(g.length) }, { lr: 1e-3, step });
        m.set(name, r.s0);
        v.set(name, r.s1);
        const e = relErrToMax(gpu.params().get(name)!.toFloat32Array(), r.p);
        assert.ok(e < 1e-5, `step ${step} ${name}: ${e}`);
      });
    }
    gpu.dispose();
    cpu.dispose();
  });
}
