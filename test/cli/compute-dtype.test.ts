// --compute_dtype on `eval` and `features`: bf16 runs (its numbers close to f32's, not equal),
// f32 is the default, other values exit 2 naming the flag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { main } from '@sparsify/cli';

const FIX = join(import.meta.dirname, '..', 'fixtures');
const CODERS = join(FIX, 'train', 'gpt2_sae', 'final');
const MODEL = join(FIX, 'train', 'models', 'gpt2');
const CORPUS = join(FIX, 'data', 'corpus.jsonl');
const dir = mkdtempSync(join(tmpdir(), 'spx-compute-dtype-'));

function capture() {
  const o = { out: '', err: '' };
  return { o, io: { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s) } } };
}

async function evalReport(extra: string[]): Promise<Record<string, { fvu: number }>> {
  const json = join(dir, `eval${extra.join('')}.json`);
  const c = capture();
  const code = await main(['eval', CODERS, MODEL, CORPUS, '--ctx_len', '32', '--max_examples', '4', '--batch_size', '2', '--json', json, ...extra], c.io);
  assert.equal(code, 0, c.o.err);
  return JSON.parse(readFileSync(json, 'utf8')).hookpoints;
}

test('eval --compute_dtype bf16: reconstruction close to f32 (the default), not identical', async () => {
  const def = await evalReport([]);
  const f32 = await evalReport(['--compute_dtype', 'f32']);
  const b16 = await evalReport(['--compute_dtype', 'bf16']);
  assert.deepEqual(def, f32);
  let differ = 0;
  for (const h of Object.keys(f32)) {
    assert.ok(Math.abs(b16[h].fvu - f32[h].fvu) <= 0.02 * f32[h].fvu, `${h}: fvu bf16 ${b16[h].fvu} vs f32 ${f32[h].fvu}`);
    if (b16[h].fvu !== f32[h].fvu) differ++;
  }
  assert.ok(differ > 0, 'bf16 changed no hookpoint');
});

test('features --compute_dtype bf16 runs; a bad value exits 2 naming the flag', async () => {
  const c = capture();
  const out = join(dir, 'features');
  assert.equal(await main(['features', CODERS, MODEL, CORPUS, '--ctx_len', '32', '--max_examples', '4', '--out', out, '--compute_dtype', 'bf16'], c.io), 0, c.o.err);
  assert.match(c.o.out, /wrote /);
  for (const cmd of [['eval', CODERS, MODEL, CORPUS], ['features', CODERS, MODEL, CORPUS], ['train']]) {
    const bad = capture();
    assert.equal(await main([...cmd, '--compute_dtype', 'fp8'], bad.io), 2, `${cmd[0]}: ${bad.o.err}`);
    assert.match(bad.o.err, /compute_dtype/);
  }
});
