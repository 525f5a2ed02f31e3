/**
 * Real processes on one run folder: a second `sparsify train` is refused while the first runs;
 * after a kill -9 the stale lock is taken over, --resume continues, and metrics.jsonl holds
 * every step exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function sparsify(args: string[]) {
  const child = spawn(
    process.execPath,
    ['--conditions=sparsify-source', '--import', 'tsx', '--input-type=module', '-e', "import { main } from '@sparsify/cli'; process.exitCode = await main(process.argv.slice(1));", ...args],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  child.stdout.on('data', () => {});
  const done = new Promise<{ code: number | null; signal: string | null; err: string }>((r) => child.on('exit', (code, signal) => r({ code, signal, err })));
  return { child, done };
}

async function until(cond: () => boolean, what: string, ms = 120_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const steps = (file: string) =>
  readFileSync(file, 'utf-8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l).step as number);

test('two processes on one run folder; kill -9, stale lock, resume, metrics without repeats', async () => {
  const save = mkdtempSync(join(tmpdir(), 'spx-proc-'));
  const args = ['train', '--save_dir', save, '--run_name', 'r', '--max_examples', '240', '--batch_size', '2', '--save_every', '5', '--ctx_len', '64'];
  const run = join(save, 'r');
  const a = sparsify(args);
  await until(() => existsSync(`${run}.lock`) || a.child.exitCode !== null, 'the first run to take its lock');
  const b = await sparsify(args).done;
  assert.equal(b.code, 2, b.err);
  assert.match(b.err, /in use by another training process \(pid \d+/);
  // Kill the first run hard once it has saved at least once and logged past that save.
  await until(() => a.child.exitCode !== null || (existsSync(join(run, 'trainer_state.json')) && existsSync(join(run, 'metrics.jsonl')) && steps(join(run, 'metrics.jsonl')).length > 7), 'a save');
  assert.equal(a.child.exitCode, null, 'the first run was still training when killed');
  a.child.kill('SIGKILL');
  const ra = await a.done;
  assert.equal(ra.signal, 'SIGKILL');
  assert.ok(existsSync(`${run}.lock`), 'the killed run left its lock');
  // A kill after a save committed (its state file written in `r.saving/`) but before the
  // roll-forward finished: --resume completes that save, so it resumes from the newer step.
  const committed = join(`${run}.saving`, 'trainer_state.json');
  const stateFile = existsSync(committed) ? committed : join(run, 'trainer_state.json');
  const saved = JSON.parse(readFileSync(stateFile, 'utf-8')).step;
  const c = await sparsify([...args, '--resume']).done;
  assert.equal(c.code, 0, c.err);
  assert.match(c.err, new RegExp(`resuming .* \\(step ${saved}\\)`));
  const total = 120;
  assert.deepEqual(steps(join(run, 'metrics.jsonl')), Array.from({ length: total }, (_, i) => i + 1), 'every step once, in order');
  assert.ok(!existsSync(`${run}.lock`));
});
