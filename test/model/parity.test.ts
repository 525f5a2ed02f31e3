// Parity with transformers (eager, float32) on the six tiny fixture models: every hooked module's
// output and input in the golden manifest, every hidden state and the logits, to 1e-4 relative;
// once per CPU GEMM kernel set this machine runs (avx512, avx2, portable).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { gemmAvailableKernels, gemmForceKernels, loadModel, loadSafetensors } from '@sparsify/core';
import { MODELS, assertClose, goldenPath, manifest, modelDir, tile } from './helpers.js';

const TOL = 1e-4;

after(() => {
  gemmForceKernels('auto');
});

type KernelSet = 'avx512' | 'avx2' | 'portable';
const RUNS = (gemmAvailableKernels() as KernelSet[]).flatMap((kernels) => MODELS.map((name) => [kernels, name] as const));

for (const [kernels, name] of RUNS) {
  test(`${name} (${kernels} GEMM): hooks, hidden states and logits match transformers`, async () => {
    gemmForceKernels(kernels);
    const entry = manifest.models[name];
    const golden = loadSafetensors(goldenPath(name));
    const model = await loadModel(modelDir(name));
    assert.equal(model.architecture, entry.architecture);
    assert.equal(model.numLayers, entry.num_hidden_layers);
    const tokens = golden.get('input_ids')!;
    assert.equal(tokens.dtype, 'int32');
    const [B, T] = tokens.shape;

    const hooked = entry.tensors.filter((t) => t.sparsify_hookpoint);
    const hookpoints = [...new Set(hooked.map((t) => t.sparsify_hookpoint!))];
    // Hidden states: 0 = embeddings (after the embedding dropout), i = block i-1, L = final norm.
    const names = model.hookpoints().map((h) => h.name);
    const embedOut = names.find((n) => n === 'drop' || n === 'emb_dropout') ?? names[0];
    const finalNorm = names[names.length - 1];
    const hidden = [embedOut, ...model.layerNames(), finalNorm];
    hidden.splice(model.numLayers, 1); // hidden_states.L is the final norm, not block L-1
    const all = [...new Set([...hookpoints, ...hidden])];
    const out = await model.forward(tokens, { hookpoints: all, captureInputs: true, logits: true });

    let checked = 0;
    for (const t of hooked) {
      const hp = t.sparsify_hookpoint!;
      const ref = golden.get(t.name)!.toFloat32Array();
      const isInput = t.name.endsWith('.input');
      const got = (isInput ? out.capturedInputs! : out.captured).get(hp);
      assert.ok(got, `${name}: ${t.name} (${hp}) not captured`);
      assert.deepEqual(got.shape, [B * T, t.shape[t.shape.length - 1]], `${t.name} shape`);
      const r = ref.length === got.shape[0] * got.shape[1] ? ref : tile(ref, B);
      assertClose(got, r, TOL, `${name} ${t.name}`);
      checked++;
    }
    for (let i = 0; i <= model.numLayers; i++)
      assertClose(out.captured.get(hidden[i])!, golden.get(`hidden_states.${i}`)!, TOL, `${name} hidden_states.${i} (${hidden[i]})`);
    assert.ok(out.logits);
    assert.deepEqual(out.logits.shape, [B, T, model.vocabSize]);
    assertClose(out.logits, golden.get('logits')!, TOL, `${name} logits`);
    assert.ok(checked >= 15, `${name}: only ${checked} hooked tensors checked`);
    model.dispose();
  });
}

test('long sequences (150 tokens: several attention blocks, sliding window) match transformers', async () => {
  const { join } = await import('node:path');
  const { FIXTURES } = await import('./helpers.js');
  const g = loadSafetensors(join(FIXTURES, 'golden', 'long.safetensors'));
  for (const name of ['llama', 'gemma2', 'gpt2']) {
    const model = await loadModel(modelDir(name));
    const final = model.hookpoints().at(-1)!.name;
    const out = await model.forward(g.get(`${name}.input_ids`)!, { hookpoints: [final] });
    assertClose(out.captured.get(final)!, g.get(`${name}.final_norm`)!, 1e-4, `${name} long`);
    model.dispose();
  }
});
