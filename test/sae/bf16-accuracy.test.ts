// Accuracy of the bf16 compute mode against f32 on the fixtures: the trained checkpoints of
// sparsify (checkpoints/gpt2_{sae,transcoder} with their eval inputs) and the parity coders
// (golden x). Per coder: FVU in f32 and in bf16, and the top-k index overlap (|S_f32 ∩ S_bf16| / k,
// mean and worst row). The table is printed (docs/gemm.md quotes it); the asserted bounds are
// the measured ones with margin.
//   node scripts/test.mjs test/sae/bf16-accuracy.test.ts
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { gemmBf16Path, loadSafetensors, SparseCoder, testing, type Tensor } from '@sparsify/core';

import { FIXTURES } from './helpers.js';

interface Row {
  coder: string;
  tokens: number;
  fvuF32: number;
  fvuBf16: number;
  overlap: number;
  worstRow: number;
}

after(() => testing.gemmBf16ForceWiden(false));

async function measure(name: string, c: SparseCoder, x: Tensor, y: Tensor | undefined): Promise<Row> {
  const f = await c.forward(x, { y, computeDtype: 'f32' });
  const b = await c.forward(x, { y, computeDtype: 'bf16' });
  const k = f.latentIndices.shape[1];
  const fi = f.latentIndices.toInt32Array(), bi = b.latentIndices.toInt32Array();
  const N = x.shape[0];
  let same = 0, worst = 1;
  for (let n = 0; n < N; n++) {
    const s = new Set(fi.subarray(n * k, (n + 1) * k));
    let row = 0;
    for (let j = 0; j < k; j++) if (s.has(bi[n * k + j])) row++;
    same += row;
    worst = Math.min(worst, row / k);
  }
  return { coder: name, tokens: N, fvuF32: f.fvu, fvuBf16: b.fvu, overlap: same / (N * k), worstRow: worst };
}

async function measureAll(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const run of ['gpt2_sae', 'gpt2_transcoder']) {
    const dir = join(FIXTURES, 'checkpoints', run);
    const ev = loadSafetensors(join(dir, 'eval.safetensors'));
    for (const [hook, c] of await SparseCoder.loadMany(dir, { local: true })) {
      rows.push(await measure(`${run}/${hook}`, c, ev.get(`${hook}.in`)!, ev.get(`${hook}.target`)));
      c.dispose();
    }
  }
  for (const variant of ['sae_d64_k8', 'sae_d64_k16', 'sae_d128_k8', 'sae_d128_k16', 'sae_d64_k8_groupmax', 'sae_d64_k8_multitopk', 'transcoder_d64_k8']) {
    const g = loadSafetensors(join(FIXTURES, variant, 'golden.safetensors'));
    const c = await SparseCoder.loadFromDisk(join(FIXTURES, variant, 'state'));
    rows.push(await measure(variant, c, g.get('x')!, g.get('y')));
    c.dispose();
  }
  return rows;
}

const fmt = (r: Row) =>
  `| ${r.coder} | ${r.tokens} | ${r.fvuF32.toFixed(6)} | ${r.fvuBf16.toFixed(6)} | ${(((r.fvuBf16 - r.fvuF32) / r.fvuF32) * 100).toFixed(3)}% | ${(r.overlap * 100).toFixed(2)}% | ${(r.worstRow * 100).toFixed(1)}% |`;

test('bf16 vs f32 on the fixtures: FVU within 1% (relative), top-k overlap >= 97% (mean), every path alike', async (t) => {
  const paths = [false, ...(gemmBf16Path() === 'avx512_bf16' ? [true] : [])];
  for (const widen of paths) {
    const path = testing.gemmBf16ForceWiden(widen);
    const rows = await measureAll();
    t.diagnostic(`bf16 GEMM path: ${path}`);
    t.diagnostic('| coder | tokens | FVU f32 | FVU bf16 | change | top-k overlap | worst row |');
    for (const r of rows) t.diagnostic(fmt(r));
    for (const r of rows) {
      assert.ok(Math.abs(r.fvuBf16 - r.fvuF32) <= 1e-2 * r.fvuF32, `${r.coder}: FVU ${r.fvuF32} -> ${r.fvuBf16}`);
      assert.ok(r.overlap >= 0.97, `${r.coder}: top-k overlap ${r.overlap}`);
      assert.ok(r.worstRow >= 0.7, `${r.coder}: worst row overlap ${r.worstRow}`);
    }
  }
});
