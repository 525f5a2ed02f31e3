/**
 * forward({ resume }): starting at a decoder block from its captured input gives the same logits
 * and captures as the full forward, bit for bit, on every architecture; modules below the
 * resumed block cannot be captured or spliced.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { ShapeError, Tensor, ValueError, loadModel } from '@sparsify/core';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'model', 'models');
const B = 2;
const T = 9;
const ids = Tensor.from(Int32Array.from({ length: B * T }, (_, i) => (i * 37 + 11) % 1000), [B, T]);

for (const name of ['gpt2', 'gpt_neox', 'llama', 'qwen2', 'gemma', 'gemma2']) {
  test(`${name}: resume at block 1 equals the full forward, with a splice above the prefix`, async () => {
    const model = await loadModel(join(MODELS, name));
    const [b0, b1] = model.layerNames();
    const mlp1 = `${b1}.mlp`;
    const full = await model.forward(ids, { hookpoints: [b0, b1, mlp1], captureInputs: true, logits: true });
    const hidden = full.capturedInputs!.get(b1)!;
    const half = Tensor.from(full.captured.get(mlp1)!.toFloat32Array().map((v) => 0.5 * v), [B * T, model.width(mlp1)]);
    const spliceFull = await model.forward(ids, { splice: new Map([[mlp1, half]]), logits: true });
    const resumed = await model.forward(ids, { hookpoints: [b1], splice: new Map([[mlp1, half]]), logits: true, resume: { layer: 1, hidden } });
    assert.equal(resumed.layersRun, 1);
    assert.deepEqual(resumed.logits!.toFloat32Array(), spliceFull.logits!.toFloat32Array());
    const plain = await model.forward(ids, { logits: true, resume: { layer: 1, hidden } });
    assert.deepEqual(plain.logits!.toFloat32Array(), full.logits!.toFloat32Array());

    await assert.rejects(model.forward(ids, { hookpoints: [b0], resume: { layer: 1, hidden } }), (e: Error) => e instanceof ValueError && /runs before the resumed layer 1/.test(e.message));
    await assert.rejects(model.forward(ids, { logits: true, resume: { layer: 2, hidden } }), ValueError);
    const wrong = Tensor.zeros([B * T, 3]);
    await assert.rejects(model.forward(ids, { logits: true, resume: { layer: 1, hidden: wrong } }), ShapeError);
    model.dispose();
  });
}
