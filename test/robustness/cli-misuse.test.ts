/**
 * The sparsify command under misuse: each finding class of "nothing lost, nothing hangs" gives
 * a typed error naming the problem (exit 2 for bad values, 1 for bad files), never a stack
 * trace, a hang, or a replaced run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { main } from '@sparsify/cli';
import { DEFAULT_ASSETS_DIR } from '@sparsify/train';

function capture() {
  const o = { out: '', err: '' };
  return {
    o,
    io: {
      stdout: { write: (s: string) => (o.out += s) },
      stderr: { write: (s: string) => (o.err += s), isTTY: false, columns: 200 },
      onInterrupt: () => () => {},
    },
  };
}

async function run(args: string[]) {
  const c = capture();
  const code = await main(args, c.io);
  assert.doesNotMatch(c.o.err, /unexpected error|\n\s+at /, `no stack trace for ${args.join(' ')}`);
  return { code, out: c.o.out, err: c.o.err };
}

const tmp = () => mkdtempSync(join(tmpdir(), 'spx-misuse-'));
const SHORT = ['--max_examples', '8'];

test('list flags: positionals swallowed by --hookpoints are called out; a pattern matching nothing is exit 2; nothing is replaced', async () => {
  const save = tmp();
  const first = await run(['train', ...SHORT, '--save_dir', save]);
  assert.equal(first.code, 0, first.err);
  const runDir = join(save, 'default');
  assert.ok(existsSync(join(runDir, 'h.1', 'sae.safetensors')));
  const data = join(save, 'corpus.jsonl');
  writeFileSync(data, '{"text":"hello"}\n');
  const r = await run(['train', '--save_dir', save, '--hookpoints', 'h.0', DEFAULT_ASSETS_DIR, data]);
  assert.equal(r.code, 2);
  assert.match(r.err, /--hookpoints: .* is an existing file or folder, probably the model or dataset misplaced/);
  const typo = await run(['train', ...SHORT, '--save_dir', save, '--hookpoints', 'h.0', 'h.O.mlp']);
  assert.equal(typo.code, 2);
  assert.match(typo.err, /"h\.O\.mlp" matches no module.*closest: h\.0\.mlp/);
  assert.ok(existsSync(join(runDir, 'h.1', 'sae.safetensors')), 'the first run is intact');
  assert.deepEqual(readdirSync(save).sort(), ['corpus.jsonl', 'default']);
});

test('a fresh run never replaces a run: --run_name taken is exit 2; without --run_name a fresh name; --overwrite replaces', async () => {
  const save = tmp();
  assert.equal((await run(['train', ...SHORT, '--save_dir', save, '--run_name', 'a'])).code, 0);
  const metrics = readFileSync(join(save, 'a', 'metrics.jsonl'), 'utf-8');
  const again = await run(['train', ...SHORT, '--save_dir', save, '--run_name', 'a']);
  assert.equal(again.code, 2);
  assert.match(again.err, /run folder .*a already holds a run; continue it with --resume, choose another --run_name, or replace it with --overwrite/);
  assert.equal(readFileSync(join(save, 'a', 'metrics.jsonl'), 'utf-8'), metrics, 'metrics not mixed');
  // The one-command default never fails and never overwrites.
  assert.equal((await run(['train', ...SHORT, '--save_dir', save])).code, 0);
  const second = await run(['train', ...SHORT, '--save_dir', save]);
  assert.equal(second.code, 0, second.err);
  assert.match(second.err, /holds an earlier run; this run goes to .*default-2/);
  assert.ok(existsSync(join(save, 'default', 'h.0', 'cfg.json')) && existsSync(join(save, 'default-2', 'h.0', 'cfg.json')));
  const ow = await run(['train', ...SHORT, '--save_dir', save, '--run_name', 'a', '--overwrite', '-k', '8']);
  assert.equal(ow.code, 0, ow.err);
  assert.equal(JSON.parse(readFileSync(join(save, 'a', 'h.0', 'cfg.json'), 'utf-8')).k, 8);
  assert.equal(readFileSync(join(save, 'a', 'metrics.jsonl'), 'utf-8').trim().split('\n').length, 1, 'a fresh metrics.jsonl');
  // Run names are one folder under save_dir.
  for (const bad of ['../../x', 'a/b', '..', '.hidden']) {
    const r = await run(['train', ...SHORT, '--save_dir', save, '--run_name', bad]);
    assert.equal(r.code, 2, bad);
    assert.match(r.err, /--run_name/);
  }
  assert.ok(!existsSync(join(save, '..', 'x')));
});

test('absurd sizes, bad values and bad paths are typed errors naming the flag (exit 2)', async () => {
  const save = tmp();
  const cases: [string[], RegExp][] = [
    [['--expansion_factor', '100000000'], /--expansion_factor 100000000 at 'h\.0'.*elements per weight matrix/],
    [['--num_latents', '10000000000'], /--num_latents 10000000000 .*limit/],
    [['-k', '1000'], /-k 1000 is more than the 256 latents/],
    [['--exclude_tokens', '-5'], /exclude_tokens.*-5/],
    [['--exclude_tokens', '5000'], /--exclude_tokens: 5000 is not a token id of this model \(vocabulary size 1024\)/],
    [['--save_dir', '/etc/passwd'], /--save_dir \/etc\/passwd: is a file, not a folder/],
    [['--save_dir', '/etc/passwd/x'], /--save_dir \/etc\/passwd\/x: a part of this path is a file/],
  ];
  for (const [flags, re] of cases) {
    const r = await run(['train', ...SHORT, '--save_dir', save, ...flags]);
    assert.equal(r.code, 2, `${flags.join(' ')}: ${r.err}`);
    assert.match(r.err, re);
  }
  const model = DEFAULT_ASSETS_DIR;
  const data = join(save, 'c.jsonl');
  writeFileSync(data, '{"text":"hello"}\n');
  const b = await run(['train', model, data, '--normalize_decoder', 'maybe']);
  assert.equal(b.code, 2);
  assert.match(b.err, /too many positional arguments.*--normalize_decoder takes true or false, not "maybe"/);
  assert.deepEqual(readdirSync(save).sort(), ['c.jsonl'], 'no run folder was made');
});

test('--resume validates every state file (naming file and field) and refuses changed settings, leaving the run untouched', async () => {
  const save = tmp();
  const base = ['train', ...SHORT, '--save_dir', save, '--run_name', 'r', '--batch_size', '4'];
  assert.equal((await run(base)).code, 0);
  const runDir = join(save, 'r');
  const snapshot = () => Object.fromEntries(['config.json', 'trainer_state.json', 'h.0/cfg.json', 'metrics.jsonl'].map((f) => [f, readFileSync(join(runDir, f), 'utf-8')]));
  const before = snapshot();
  for (const [flags, name] of [[['-k', '16'], /--k 16 \(the run has 24\)/], [['--batch_size', '2'], /--batch_size 2 \(the run has 4\)/], [['--expansion_factor', '4'], /--expansion_factor 4/]] as const) {
    const r = await run([...base.filter((x, i) => !(x === '--batch_size' && flags[0] === '--batch_size') && !(base[i - 1] === '--batch_size' && flags[0] === '--batch_size')), '--resume', ...flags]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, name);
    assert.deepEqual(snapshot(), before, 'the run folder is untouched');
  }
  // Settings that may change: save_every, logging.
  assert.equal((await run([...base, '--resume', '--save_every', '5', '--wandb_log_frequency', '2'])).code, 0);

  const corrupt = async (file: string, text: string, re: RegExp) => {
    const path = join(runDir, file);
    const orig = readFileSync(path, 'utf-8');
    writeFileSync(path, text);
    const r = await run([...base, '--resume']);
    assert.ok(r.code === 1 || r.code === 2, `${file}: exit ${r.code}`);
    assert.match(r.err, re, file);
    writeFileSync(path, orig);
  };
  await corrupt('optimizer_0.json', '{"kind":"adam"}', /optimizer_0\.json: field 'tensors' is missing/);
  const state = JSON.parse(readFileSync(join(runDir, 'trainer_state.json'), 'utf-8'));
  await corrupt('trainer_state.json', JSON.stringify({ ...state, global_step: -16 }), /trainer_state\.json: field 'global_step' must be a non-negative integer, got -16/);
  await corrupt('trainer_state.json', JSON.stringify({ ...state, global_step: 1e9 }), /trainer_state\.json: field 'global_step' is 1000000000, more than this run has/);
  await corrupt('trainer_state.json', 'root:x:0:0:root:/root', /trainer_state\.json: the trainer state is not valid JSON/);
  await corrupt('config.json', '{', /config\.json: the run config is not valid JSON/);
  assert.equal((await run([...base, '--resume'])).code, 0, 'the repaired run resumes');
});

test('two runs on one run folder: the second is refused while the first holds the lock', async () => {
  const save = tmp();
  const { lockRunFolder } = await import('@sparsify/train');
  const lock = lockRunFolder(join(save, 'busy'));
  const r = await run(['train', ...SHORT, '--save_dir', save, '--run_name', 'busy']);
  assert.equal(r.code, 2);
  assert.match(r.err, /in use by another training process \(pid \d+/);
  lock.release();
  assert.equal((await run(['train', ...SHORT, '--save_dir', save, '--run_name', 'busy'])).code, 0);
  assert.ok(!existsSync(join(save, 'busy.lock')), 'released at the end');
});

test('FIFOs and devices where a file is expected are refused, not read forever', async () => {
  const dir = tmp();
  const fifo = join(dir, 'data.jsonl');
  execFileSync('mkfifo', [fifo]);
  const r = await run(['train', DEFAULT_ASSETS_DIR, fifo, '--save_dir', dir, ...SHORT]);
  assert.equal(r.code, 1);
  assert.match(r.err, /data\.jsonl: a dataset file must be a regular file, but this is a FIFO/);
  const model = join(dir, 'model');
  mkdirSync(model);
  for (const f of ['config.json', 'tokenizer.json']) cpSync(join(DEFAULT_ASSETS_DIR, f), join(model, f));
  execFileSync('mkfifo', [join(model, 'model.safetensors')]);
  const h = await run(['hookpoints', model]);
  assert.equal(h.code, 1);
  assert.match(h.err, /model\.safetensors: a safetensors file must be a regular file, but this is a FIFO/);
  // /dev/zero streams forever: a device is not a dataset file, whatever its name.
  symlinkSync('/dev/zero', join(dir, 'zero.txt'));
  const z = await run(['train', DEFAULT_ASSETS_DIR, join(dir, 'zero.txt'), '--save_dir', dir]);
  assert.equal(z.code, 1);
  assert.match(z.err, /zero\.txt: a dataset file must be a regular file, but this is a device/);
});

test('info marks coder folders that do not load, exactly as loading does, and exits non-zero', async () => {
  const save = tmp();
  assert.equal((await run(['train', ...SHORT, '--save_dir', save, '--run_name', 'i'])).code, 0);
  const runDir = join(save, 'i');
  const good = await run(['info', runDir]);
  assert.equal(good.code, 0);
  const cfgPath = join(runDir, 'h.1', 'cfg.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf-8'));
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, k: 100000 }));
  const bad = await run(['info', runDir]);
  assert.equal(bad.code, 1);
  assert.match(bad.out, /^h\.0\s+sae/m);
  assert.match(bad.out, /h\.1: INVALID: .*k=100000 is larger than num_latents=256/);
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, d_in: 64 }));
  assert.match((await run(['info', runDir])).out, /h\.1: INVALID: .*shape/);
  rmSync(join(runDir, 'h.1', 'sae.safetensors'));
  writeFileSync(cfgPath, JSON.stringify(cfg));
  assert.match((await run(['info', runDir])).out, /h\.1: INVALID: .*no sae\.safetensors/);
});

test('error messages never echo file contents (a symlink to a foreign file)', async () => {
  const dir = tmp();
  const model = join(dir, 'model');
  mkdirSync(model);
  writeFileSync(join(dir, 'secret'), 'root:x:0:0:secret-line\n');
  symlinkSync(join(dir, 'secret'), join(model, 'config.json'));
  const r = await run(['hookpoints', model]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /config\.json: invalid JSON/);
  assert.doesNotMatch(r.err, /secret|root:x/);
});

test('temp files of a killed tokenizer run are removed; live ones kept', async () => {
  const cache = tmp();
  const prev = process.env.SPARSIFY_CACHE;
  process.env.SPARSIFY_CACHE = cache;
  try {
    const tokens = join(cache, 'tokens');
    mkdirSync(tokens, { recursive: true });
    const dead = join(tokens, '.abc.tokens.999999999-12345.0123456789ab.tmp');
    const legacy = join(tokens, '.abc.tokens.999999998.0123456789ab.tmp');
    const mine = join(tokens, `.abc.tokens.${process.pid}.0123456789ab.tmp`);
    for (const f of [dead, legacy, mine]) writeFileSync(f, 'x');
    const data = join(cache, 'c.jsonl');
    writeFileSync(data, '{"text":"hello world, hello tokens"}\n'.repeat(50));
    const r = await run(['train', DEFAULT_ASSETS_DIR, data, '--ctx_len', '8', '--batch_size', '2', '--save_dir', cache]);
    assert.equal(r.code, 0, r.err);
    assert.ok(!existsSync(dead) && !existsSync(legacy), 'stale temp files removed');
    assert.ok(existsSync(mine), 'a live writer keeps its file');
  } finally {
    if (prev === undefined) delete process.env.SPARSIFY_CACHE;
    else process.env.SPARSIFY_CACHE = prev;
  }
});

test('signum runs: only coder folders at the top level; a run in the earlier train_iterate/ layout resumes and moves over', async () => {
  const save = tmp();
  const args = ['train', '--max_examples', '16', '--batch_size', '4', '--save_dir', save, '--run_name', 's', '--optimizer', 'signum'];
  assert.equal((await run(args)).code, 0);
  const runDir = join(save, 's');
  const top = readdirSync(runDir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  assert.deepEqual(top, ['h.0', 'h.1'], 'every top-level folder is a coder (Python load_many loads them all)');
  // The layout of earlier versions: {run}/train_iterate/{name}/.
  const { renameSync } = await import('node:fs');
  mkdirSync(join(runDir, 'train_iterate'));
  for (const h of ['h.0', 'h.1']) renameSync(join(runDir, h, 'train_iterate'), join(runDir, 'train_iterate', h));
  const r = await run([...args, '--resume']);
  assert.equal(r.code, 0, r.err);
  assert.ok(!existsSync(join(runDir, 'train_iterate')) && existsSync(join(runDir, 'h.0', 'train_iterate', 'sae.safetensors')));
});
