/** `sparsify convert`: run folders and single coder folders between sparsify and SAELens, bitwise back; usage errors exit 2. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { SparseCoder } from '@sparsify/core';
import { main } from '@sparsify/cli';

const FIX = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'saelens');

function capture() {
  const o = { out: '', err: '' };
  return { o, io: { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s) } } };
}

test('convert a run folder to SAELens and back: bitwise identical; hook_name from the folder name', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-convert-'));
  try {
    for (const [i, h] of ['h.0', 'h.1'].entries()) {
      const c = await SparseCoder.create(16, { expansionFactor: 4, k: 4 }, { seed: i });
      await c.saveToDisk(join(dir, 'run', h));
      c.dispose();
    }
    const a = capture();
    assert.equal(await main(['convert', '--to', 'saelens', join(dir, 'run'), join(dir, 'sl')], a.io), 0, a.o.err);
    assert.deepEqual(readdirSync(join(dir, 'sl')).sort(), ['h.0', 'h.1']);
    const cfg = JSON.parse(readFileSync(join(dir, 'sl', 'h.1', 'cfg.json'), 'utf-8'));
    assert.equal(cfg.architecture, 'topk');
    assert.equal(cfg.metadata.hook_name, 'h.1');
    const b = capture();
    assert.equal(await main(['convert', '--to=sparsify', join(dir, 'sl'), join(dir, 'back')], b.io), 0, b.o.err);
    for (const h of ['h.0', 'h.1'])
      for (const f of ['cfg.json', 'sae.safetensors'])
        assert.ok(readFileSync(join(dir, 'back', h, f)).equals(readFileSync(join(dir, 'run', h, f))), `${h}/${f}`);
    // A single folder, with an explicit hook name.
    const s = capture();
    assert.equal(await main(['convert', '--to', 'saelens', '--hook_name', 'blocks.0.hook_mlp_out', join(dir, 'run', 'h.0'), join(dir, 'one')], s.io), 0, s.o.err);
    assert.equal(JSON.parse(readFileSync(join(dir, 'one', 'cfg.json'), 'utf-8')).metadata.hook_name, 'blocks.0.hook_mlp_out');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('convert refuses: existing DST, bad --to, same format, kinds without an equivalent (DST never created)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-convert-bad-'));
  try {
    const c = await SparseCoder.create(8, { expansionFactor: 2, k: 2 });
    await c.saveToDisk(join(dir, 'a'));
    c.dispose();
    const cases: [string[], RegExp][] = [
      [['convert', '--to', 'saelens', join(dir, 'a'), join(dir, 'a')], /already exists/],
      [['convert', '--to', 'onnx', join(dir, 'a'), join(dir, 'x')], /--to must be saelens or sparsify/],
      [['convert', '--to', 'sparsify', join(dir, 'a'), join(dir, 'x')], /already in the sparsify format/],
      [['convert', '--to', 'sparsify', join(FIX, 'gated'), join(dir, 'x')], /does not load as a trainable SAELens kind/],
      [['convert', '--to', 'saelens', join(dir, 'a')], /expected SRC and DST/],
    ];
    for (const [argv, msg] of cases) {
      const k = capture();
      assert.equal(await main(argv, k.io), 2, argv.join(' '));
      assert.match(k.o.err, msg);
      assert.doesNotMatch(k.o.err, /at .*\.ts:\d+/, 'no stack trace');
    }
    assert.ok(!existsSync(join(dir, 'x')));
    assert.deepEqual(readdirSync(dir).sort(), ['a'], 'no temporary folder left behind');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sparsify info lists SAELens folders with their architecture, width and k', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-info-sl-'));
  try {
    const { cpSync } = await import('node:fs');
    for (const v of ['jumprelu', 'topk']) cpSync(join(FIX, v), join(dir, v), { recursive: true });
    const c = capture();
    assert.equal(await main(['info', dir], c.io), 0, c.o.err);
    assert.match(c.o.out, /^jumprelu +saelens jumprelu +16 +64 +- +jumprelu +F32/m);
    assert.match(c.o.out, /^topk +saelens topk +16 +64 +8 +topk +F32/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
