/** The CPU forward's scratch is bounded by running large batches in chunks of whole sequences; results are unchanged. */
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Tensor, loadModel } from '@sparsify/core';
import { DEFAULT_ASSETS_DIR } from '@sparsify/train';

test('a batch over the scratch budget runs in chunks with the same captures, inputs and logits', async () => {
  const m = await loadModel(DEFAULT_ASSETS_DIR);
  const B = 5;
  const T = 16;
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 37) % 1000);
  const tokens = Tensor.from(ids, [B, T]);
  const opts = { hookpoints: ['h.0', 'h.1.mlp'], captureInputs: true, logits: true };
  const whole = await m.forward(tokens, opts);
  const prev = process.env.SPARSIFY_FORWARD_SCRATCH_MB;
  // About one sequence of 16 tokens per call for this model (d 128, inner 512).
  process.env.SPARSIFY_FORWARD_SCRATCH_MB = String((16 * 4 * (6 * 128 + 128 + 3 * 128 + 2 * 512) * 1.5) / 2 ** 20);
  try {
    const chunked = await m.forward(tokens, opts);
    for (const name of opts.hookpoints) {
      assert.deepEqual(chunked.captured.get(name)!.shape, [B * T, whole.captured.get(name)!.shape[1]]);
      assert.deepEqual(chunked.captured.get(name)!.toFloat32Array(), whole.captured.get(name)!.toFloat32Array(), name);
      assert.deepEqual(chunked.capturedInputs!.get(name)!.toFloat32Array(), whole.capturedInputs!.get(name)!.toFloat32Array(), `${name} input`);
    }
    assert.deepEqual(chunked.logits!.shape, [B, T, m.vocabSize]);
    assert.deepEqual(chunked.logits!.toFloat32Array(), whole.logits!.toFloat32Array());
  } finally {
    if (prev === undefined) delete process.env.SPARSIFY_FORWARD_SCRATCH_MB;
    else process.env.SPARSIFY_FORWARD_SCRATCH_MB = prev;
  }
  m.dispose();
});
