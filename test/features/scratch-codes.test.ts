// The feature pass's scratch codes with batches of different widths (variable-k coders): every
// row reads back padded to the widest batch (value 0 at index 0), including a batch where nothing
// fired (width 0).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ScratchCodes } from '../../packages/train/src/features/scratch-codes.ts';

test('scratch codes: batches of widths 2, 0 and 3 read back padded to width 3', () => {
  const dir = mkdtempSync(join(tmpdir(), 'scratch-codes-'));
  const T = 2;
  const s = new ScratchCodes(join(dir, 's'), 1, T, new Set([7]));
  try {
    const batches: { rows: number; k: number }[] = [{ rows: 2, k: 2 }, { rows: 1, k: 0 }, { rows: 2, k: 3 }];
    const want: { idx: number[]; act: number[] }[] = [];
    let row = 0;
    for (const { rows, k } of batches) {
      s.appendTokens(Int32Array.from({ length: rows * T }, (_, i) => (i === 0 ? 7 : row * 10 + i)));
      const idx = Int32Array.from({ length: rows * T * k }, (_, i) => 100 * row + i + 1);
      const act = Float32Array.from(idx, (v) => v / 2);
      s.appendCodes(0, idx, act, k);
      for (let r = 0; r < rows; r++) {
        const wi: number[] = [], wa: number[] = [];
        for (let p = 0; p < T; p++)
          for (let j = 0; j < 3; j++) {
            const v = j < k ? idx[(r * T + p) * k + j] : 0;
            wi.push(v);
            wa.push(j < k ? v / 2 : 0);
          }
        want.push({ idx: wi, act: wa });
      }
      row += rows;
    }
    assert.equal(s.k[0], 3);
    const read = s.reader(0);
    for (let r = 0; r < want.length; r++) {
      const got = read(r);
      assert.deepEqual([...got.idx], want[r].idx, `row ${r} indices`);
      assert.deepEqual([...got.act], want[r].act, `row ${r} values`);
    }
    assert.deepEqual([...read(0).ignored], [1, 0]);
  } finally {
    s.remove();
    rmSync(dir, { recursive: true, force: true });
  }
});
