/**
 * Run folders under faults and misuse: a kill at every rename of a save (readers always load,
 * resume finds a consistent checkpoint), the lock (a second process is refused, a stale lock
 * is recovered), fresh runs never replace a run, metrics.jsonl is cut back on resume.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';

import { ConfigError, SparseCoder } from '@sparsify/core';
import {
  claimRunFolder,
  freshRunName,
  lockRunFolder,
  processStartTime,
  recoverRunFolder,
  replaceRunFolder,
  STATE_FILE,
  truncateMetrics,
} from '@sparsify/train';

const tmp = () => mkdtempSync(join(tmpdir(), 'spx-robust-'));

/** First encoder weight of the coder made with seed `tag`, to tell checkpoints apart. */
const marks = new Map<number, number>();

/** A checkpoint of two real coders made with seed `tag`, the state file naming the tag. */
async function writer(tag: number) {
  const coders = await Promise.all(['h.0', 'h.1'].map(() => SparseCoder.create(4, { numLatents: 8, k: 2 }, { seed: tag })));
  marks.set(coders[0].params().get('encoder.weight')!.toFloat32Array()[0], tag);
  return async (d: string) => {
    for (const [i, c] of coders.entries()) await c.saveToDisk(join(d, `h.${i}`));
    writeFileSync(join(d, 'optimizer_0.json'), JSON.stringify({ tag }));
    writeFileSync(join(d, STATE_FILE), JSON.stringify({ tag }));
  };
}

async function tagsOf(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const h of ['h.0', 'h.1']) {
    const c = await SparseCoder.loadFromDisk(join(dir, h));
    out.push(marks.get(c.params().get('encoder.weight')!.toFloat32Array()[0])!);
    c.dispose();
  }
  return out;
}

class Kill extends Error {}

test('a kill after any rename of a save: readers load complete coders at that instant; recovery gives one whole checkpoint', async () => {
  const root = tmp();
  const dir = join(root, 'run');
  await replaceRunFolder(dir, await writer(1));
  writeFileSync(join(dir, 'metrics.jsonl'), '{"step":1}\n');
  // How many renames a save takes.
  let renames = 0;
  await replaceRunFolder(dir, await writer(2), () => void renames++);
  assert.ok(renames >= 4, `renames: ${renames}`);
  for (let killAt = 1; killAt <= renames; killAt++) {
    const w = await writer(3);
    let n = 0;
    await assert.rejects(
      replaceRunFolder(dir, w, () => {
        if (++n === killAt) throw new Kill();
      }),
      Kill,
    );
    // A reader that is not --resume (no recovery): every coder folder loads, each coder whole.
    for (const t of await tagsOf(dir)) assert.ok(t === 2 || t === 3, `kill at rename ${killAt}: tag ${t}`);
    assert.equal(readFileSync(join(dir, 'metrics.jsonl'), 'utf-8'), '{"step":1}\n');
    // --resume recovers: the committed save is finished, everything from one checkpoint.
    assert.equal(recoverRunFolder(dir), true);
    const state = JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf-8')).tag;
    assert.equal(state, 3, 'a committed save is rolled forward');
    assert.deepEqual(await tagsOf(dir), [3, 3]);
    assert.equal(JSON.parse(readFileSync(join(dir, 'optimizer_0.json'), 'utf-8')).tag, 3);
    assert.deepEqual(readdirSync(root).sort(), ['run'], 'no leftovers');
    await replaceRunFolder(dir, await writer(2));
  }
  // A kill before the commit (state file not written): recovery drops the partial save.
  const saving = dir + '.saving';
  mkdirSync(join(saving, 'h.0'), { recursive: true });
  writeFileSync(join(saving, 'h.0', 'sae.safetensors'), 'partial');
  assert.equal(recoverRunFolder(dir), true);
  assert.deepEqual(await tagsOf(dir), [2, 2]);
  assert.ok(!existsSync(saving));
});

test('the first save puts each coder folder in place whole', async () => {
  const root = tmp();
  const dir = join(root, 'run');
  mkdirSync(dir);
  writeFileSync(join(dir, 'metrics.jsonl'), '{"step":1}\n'); // metrics are written before the first save
  let n = 0;
  let seen = 0;
  await replaceRunFolder(dir, await writer(5), () => {
    n++;
    // After each rename, any coder folder present has both files.
    for (const h of ['h.0', 'h.1'])
      if (existsSync(join(dir, h))) {
        assert.ok(existsSync(join(dir, h, 'cfg.json')) && existsSync(join(dir, h, 'sae.safetensors')), `rename ${n}: ${h} whole`);
        seen++;
      }
  });
  assert.ok(seen > 0);
  assert.deepEqual(await tagsOf(dir), [5, 5]);
});

test('run lock: a second claim is refused while the first holds it; released locks and dead owners are taken over', async () => {
  const root = tmp();
  const dir = join(root, 'run');
  const a = lockRunFolder(dir);
  assert.throws(() => lockRunFolder(dir), (e: Error) => e instanceof ConfigError && /in use by another training process \(pid \d+/.test(e.message) && e.message.includes(dir));
  a.release();
  assert.ok(!existsSync(`${dir}.lock`));
  lockRunFolder(dir).release();

  // A lock left by a killed process (its pid is gone) is stale.
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 100)']);
  const pid = child.pid!;
  await new Promise((r) => child.on('exit', r));
  writeFileSync(`${dir}.lock`, JSON.stringify({ pid, start: '1', host: hostname() }));
  const b = lockRunFolder(dir);
  assert.equal(JSON.parse(readFileSync(`${dir}.lock`, 'utf-8')).pid, process.pid);
  b.release();

  // A live pid that started at another time (pid reuse) is stale too; the true start time is not.
  const start = processStartTime(process.pid);
  if (start !== null) {
    writeFileSync(`${dir}.lock`, JSON.stringify({ pid: process.pid, start: String(Number(start) + 1), host: hostname() }));
    lockRunFolder(dir).release();
    writeFileSync(`${dir}.lock`, JSON.stringify({ pid: process.pid, start, host: hostname() }));
    assert.throws(() => lockRunFolder(dir), ConfigError);
  }
  // Another host cannot be checked: refused, with the way out.
  writeFileSync(`${dir}.lock`, JSON.stringify({ pid: 1, start: null, host: 'elsewhere' }));
  assert.throws(() => lockRunFolder(dir), /delete the lock file/);
});

test('a fresh run never replaces a run: refused unless resume or overwrite; fresh names skip used ones', async () => {
  const root = tmp();
  const dir = join(root, 'run');
  await replaceRunFolder(dir, await writer(1));
  assert.throws(() => claimRunFolder(dir, { resume: false }), (e: Error) => e instanceof ConfigError && /--resume/.test(e.message) && /--run_name/.test(e.message) && /--overwrite/.test(e.message));
  assert.deepEqual(await tagsOf(dir), [1, 1], 'left untouched');
  assert.ok(!existsSync(`${dir}.lock`), 'the refused claim released its lock');
  claimRunFolder(dir, { resume: true }).release();
  claimRunFolder(dir, { resume: false, overwrite: true }).release();
  assert.ok(!existsSync(dir), 'overwrite removes the old run');
  assert.equal(freshRunName(root, 'run'), 'run');
  mkdirSync(join(root, 'default'));
  writeFileSync(join(root, 'default', 'metrics.jsonl'), '');
  mkdirSync(join(root, 'default-2'));
  writeFileSync(join(root, 'default-2', 'x'), '');
  assert.equal(freshRunName(root, 'default'), 'default-3');
});

test('metrics.jsonl is cut back to the checkpoint step on resume (torn lines dropped)', () => {
  const dir = tmp();
  const lines = [1, 2, 3, 4, 5].map((s) => JSON.stringify({ step: s, fvu: 0.5 }));
  writeFileSync(join(dir, 'metrics.jsonl'), lines.join('\n') + '\n{"step":6,"fv');
  assert.equal(truncateMetrics(dir, 3), 3);
  assert.deepEqual(readFileSync(join(dir, 'metrics.jsonl'), 'utf-8').trim().split('\n').map((l) => JSON.parse(l).step), [1, 2, 3]);
  assert.equal(truncateMetrics(dir, 3), 0);
});
