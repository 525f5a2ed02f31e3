// SAELens's coefficient warm-up and expected_average_only_in scaling factor.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { normScalingFactor, warmedUpCoefficient } from '@sparsify/train';

test('warmedUpCoefficient: 0 at step 0, linear to the final value at W, constant after; W = 0 is the final value', () => {
  assert.deepEqual([0, 1, 2, 4, 9].map((t) => warmedUpCoefficient(2, t, 4)), [0, 0.5, 1, 2, 2]);
  assert.equal(warmedUpCoefficient(3, 0, 0), 3);
  assert.throws(() => warmedUpCoefficient(1, 0, -1), /warm-up/);
});

test('normScalingFactor: sqrt(d_in) over the mean of per-batch mean norms; scaled inputs then have mean norm sqrt(d_in)', () => {
  // Rows of norm 3 and 5 in batch 1 (mean 4), norm 2 in batch 2: mean of means 3.
  const b1 = new Float32Array([3, 0, 0, 0, 0, 5, 0, 0]);
  const b2 = new Float32Array([0, 2, 0, 0]);
  const s = normScalingFactor([b1, b2], 4);
  assert.equal(s, 2 / 3);
  assert.throws(() => normScalingFactor([new Float32Array(3)], 4), /whole number/);
  assert.throws(() => normScalingFactor([], 4), /no batches/);
});
