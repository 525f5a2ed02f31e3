/**
 * Data pipeline throughput: token-cache build (tokenize + chunk + write), reopen, random row
 * reads, and the numpy-compatible permutation. Synthetic input: the fixture corpus repeated.
 *   node --conditions=sparsify-source --import tsx bench/data.ts [repeats=20] [threads=1,2]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { loadTokenizer } from '@sparsify/core';
import { numpyPermutation, openTokenDataset } from '@sparsify/train';
import { sectionHeaderLines } from './lib/machine.js';

const FIX = join(import.meta.dirname, '..', 'test', 'fixtures', 'data');
const repeats = Number(process.argv[2] ?? 20);
const threadList = (process.argv[3] ?? '1,2').split(',').map(Number);

const dir = mkdtempSync(join(tmpdir(), 'sparsify-bench-data-'));
console.log(['## Data pipeline (tokenize into the token cache, reopen, batch reads)', '', ...sectionHeaderLines()].join('\n'));
try {
  const src = join(dir, 'corpus.jsonl');
  writeFileSync(src, readFileSync(join(FIX, 'corpus.jsonl'), 'utf-8').repeat(repeats));
  const tokenizer = await loadTokenizer(FIX);
  for (const threads of threadList) {
    const t0 = performance.now();
    const ds = await openTokenDataset(src, { tokenizer, ctxLen: 256, cacheDir: join(dir, `c${threads}`), tokenizerThreads: threads });
    const s = (performance.now() - t0) / 1000;
    console.log(`build  threads=${threads}: ${ds.length} rows x 256 in ${s.toFixed(2)} s = ${((ds.length * 256) / s / 1e3).toFixed(0)} k tokens/s`);
  }
  let t0 = performance.now();
  const ds = await openTokenDataset(src, { tokenizer, ctxLen: 256, cacheDir: join(dir, `c${threadList[0]}`) });
  console.log(`reopen (cached): ${(performance.now() - t0).toFixed(1)} ms`);
  t0 = performance.now();
  let rows = 0;
  for (let i = 0; i + 8 <= ds.length; i += 8, rows += 8) ds.rows([i, i + 1, i + 2, i + 3, i + 4, i + 5, i + 6, i + 7]);
  const ms = performance.now() - t0;
  console.log(`rows(): ${rows} shuffled rows in batches of 8: ${ms.toFixed(1)} ms (${((rows * 256) / (ms / 1000) / 1e6).toFixed(1)} M tokens/s)`);
  t0 = performance.now();
  numpyPermutation(10_000_000, 42);
  console.log(`numpyPermutation(1e7): ${((performance.now() - t0) / 1000).toFixed(2)} s`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
