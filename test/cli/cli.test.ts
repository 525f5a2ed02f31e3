/** The sparsify command end to end on the embedded default (short runs) and the inspect commands. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SparseCoder } from '@sparsify/core';
import { main } from '@sparsify/cli';
import { DEFAULT_ASSETS_DIR } from '@sparsify/train';

function capture(tty = false) {
  const o = { out: '', err: '', handler: undefined as undefined | (() => void) };
  return {
    o,
    io: {
      stdout: { write: (s: string) => (o.out += s) },
      stderr: { write: (s: string) => (o.err += s), isTTY: tty, columns: 200 },
      onInterrupt: (h: () => void) => {
        o.handler = h;
        return () => (o.handler = undefined);
      },
    },
  };
}

test('sparsify train with no model/dataset trains the embedded default; info lists the result', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-cli-'));
  const c = capture();
  const code = await main(['train', '--max_examples', '24', '--save_dir', dir, '--run_name', 'demo', '--wandb_log_frequency', '1'], c.io);
  assert.equal(code, 0, c.o.err);
  assert.match(c.o.err, /embedded tiny model/);
  assert.match(c.o.err, /^step 1\/3 k=24 fvu\/h\.0=/m, 'plain log lines when not a TTY');
  assert.match(c.o.out, /done: 3 steps, 3 batches, 6,144 tokens/);
  const run = join(dir, 'demo');
  for (const h of ['h.0', 'h.1']) {
    const coder = await SparseCoder.loadFromDisk(join(run, h));
    assert.equal(coder.numLatents, 256);
    assert.equal(coder.cfg.k, 24);
    coder.dispose();
  }
  const cfg = JSON.parse(readFileSync(join(run, 'config.json'), 'utf-8'));
  assert.equal(cfg.model, DEFAULT_ASSETS_DIR);
  assert.equal(cfg.ctx_len, 256);
  assert.equal(cfg.max_examples, 24);
  assert.equal(readFileSync(join(run, 'metrics.jsonl'), 'utf-8').trim().split('\n').length, 3);

  const i = capture();
  assert.equal(await main(['info', run], i.io), 0);
  assert.match(i.o.out, /h\.0\s+sae\s+128\s+256\s+24\s+topk\s+F32/);
  assert.match(i.o.out, /training state: 3 optimizer steps, 3 batches/);

  // --resume continues the run (nothing left to do: same 3 steps, one more save).
  const r = capture();
  assert.equal(await main(['train', '--max_examples', '24', '--save_dir', dir, '--run_name', 'demo', '--resume'], r.io), 0, r.o.err);
  assert.match(r.o.err, /resuming .* at batch 3 \(step 3\)/);
});

test('progress bar on a TTY; interrupt saves a checkpoint and exits 130', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-cli-'));
  const c = capture(true);
  const p = main(['train', '--max_examples', '40', '--batch_size', '4', '--save_dir', dir, '-k', '8'], c.io);
  // Interrupt as soon as the first step is reported.
  while (!c.o.err.includes('tok/s')) await new Promise((r) => setTimeout(r, 20));
  c.o.handler!();
  const code = await p;
  assert.equal(code, 130);
  assert.match(c.o.err, /█|░/);
  assert.match(c.o.err, /step \d+\/10 \| [\d,-]+ tok\/s \| fvu \d\.\d{4} \| dead \d+\.\d% \| k 8 \| ETA/);
  assert.match(c.o.err, /interrupted; saving a checkpoint/);
  assert.match(c.o.out, /interrupted: \d+ steps/);
  assert.ok(existsSync(join(dir, 'default', 'trainer_state.json')));
  const st = JSON.parse(readFileSync(join(dir, 'default', 'trainer_state.json'), 'utf-8'));
  assert.ok(st.step >= 1 && st.step < 10);
});

test('sparsify hookpoints lists names and widths; bad model path exits 1, a hookpoint pattern matching nothing 2', async () => {
  const c = capture();
  assert.equal(await main(['hookpoints', DEFAULT_ASSETS_DIR], c.io), 0);
  assert.match(c.o.out, /^h\.0\s+128$/m);
  assert.match(c.o.out, /^h\.1\.mlp\.act\s+512$/m);
  const b = capture();
  assert.equal(await main(['hookpoints', '/nonexistent/model'], b.io), 1);
  assert.match(b.o.err, /nonexistent/);
  const t = capture();
  assert.equal(await main(['train', '/nonexistent/model', '/nonexistent/data', '--save_dir', mkdtempSync(join(tmpdir(), 'x'))], t.io), 1);
  assert.match(t.o.err, /nonexistent/);
  const u = capture();
  assert.equal(await main(['train', '--hookpoints', 'nomatch.*', '--max_examples', '8', '--save_dir', mkdtempSync(join(tmpdir(), 'x'))], u.io), 2, 'a pattern that matches nothing is a usage error');
  assert.match(u.o.err, /nomatch.*closest: /);
});

test('sparsify train <model> <dataset>: a local JSON-lines text dataset, tokenized and cached', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-cli-'));
  const prev = process.env.SPARSIFY_CACHE;
  process.env.SPARSIFY_CACHE = join(dir, 'cache');
  try {
    const c = capture();
    const argv = ['train', DEFAULT_ASSETS_DIR, join(DEFAULT_ASSETS_DIR, 'corpus.jsonl'), '--ctx_len', '64', '--max_examples', '32', '--batch_size', '8',
      '--layers', '1', '--expansion-factor', '2', '-k', '8', '--save_dir', dir, '--run_name', 'text', '--optimizer', 'signum'];
    assert.equal(await main(argv, c.io), 0, c.o.err);
    assert.match(c.o.out, /done: 4 steps, 4 batches, 2,048 tokens/);
    assert.match(c.o.err, /sparse coder\(s\) on h\.1; 32 sequences of 64 tokens/);
    const cfg = JSON.parse(readFileSync(join(dir, 'text', 'config.json'), 'utf-8'));
    assert.equal(cfg.optimizer, 'signum');
    assert.deepEqual(cfg.hookpoints, ['h.1']);
    assert.ok(existsSync(join(dir, 'text', 'h.1', 'train_iterate', 'sae.safetensors')), 'the training iterate lives inside the coder folder');
    assert.ok(!existsSync(join(dir, 'text', 'train_iterate')), 'only coder folders at the top level (Python load_many)');
    const bad = capture();
    assert.equal(await main(['train', DEFAULT_ASSETS_DIR, join(DEFAULT_ASSETS_DIR, 'corpus.jsonl'), '--text_column', 'nope', '--save_dir', dir], bad.io), 1);
    assert.match(bad.o.err, /no column 'nope'/);
  } finally {
    if (prev === undefined) delete process.env.SPARSIFY_CACHE;
    else process.env.SPARSIFY_CACHE = prev;
  }
});

test('several seeds from the CLI: coders in {hook}/seed{N}/, listed by info', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-cli-'));
  const c = capture();
  assert.equal(await main(['train', '--init_seeds', '0', '1', '--layers', '0', '--max_examples', '16', '--save_dir', dir], c.io), 0, c.o.err);
  const i = capture();
  assert.equal(await main(['info', join(dir, 'default')], i.io), 0);
  assert.match(i.o.out, /^h\.0\/seed0\s+sae\s+128\s+256\s+24/m);
  assert.match(i.o.out, /^h\.0\/seed1\s+sae/m);
  const one = capture();
  assert.equal(await main(['info', join(dir, 'default', 'h.0', 'seed1')], one.io), 0);
  assert.match(one.o.out, /^\.\s+sae\s+128\s+256/m);
});

test('CLI resume after an interrupt gives the weights of an uninterrupted run', async () => {
  const { loadSafetensors } = await import('@sparsify/core');
  const base = ['train', '--max_examples', '32', '--batch_size', '4', '--optimizer', 'signum', '--layers', '1', '-k', '8'];
  const a = mkdtempSync(join(tmpdir(), 'spx-cli-'));
  assert.equal(await main([...base, '--save_dir', a], capture().io), 0);
  const b = mkdtempSync(join(tmpdir(), 'spx-cli-'));
  const c = capture();
  const p = main([...base, '--save_dir', b], c.io);
  while (!/step [4-9]\/8/.test(c.o.err)) await new Promise((r) => setTimeout(r, 5));
  c.o.handler!();
  assert.equal(await p, 130);
  const done = JSON.parse(readFileSync(join(b, 'default', 'trainer_state.json'), 'utf-8')).step;
  assert.ok(done >= 4 && done < 8, `stopped after ${done} steps`);
  const r = capture();
  assert.equal(await main([...base, '--save_dir', b, '--resume'], r.io), 0, r.o.err);
  assert.match(r.o.out, /done: 8 steps/);
  const wa = loadSafetensors(join(a, 'default', 'h.1', 'sae.safetensors'));
  const wb = loadSafetensors(join(b, 'default', 'h.1', 'sae.safetensors'));
  for (const [k, t] of wa) {
    const x = t.toFloat32Array();
    const y = wb.get(k)!.toFloat32Array();
    let m = 0;
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
    assert.ok(m <= 1e-5, `${k}: max diff ${m}`);
  }
});
