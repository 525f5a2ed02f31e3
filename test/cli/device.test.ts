/** `--device auto|cpu|cuda` of the CLI: parsing, what auto picks, and the errors without a GPU. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { cudaUsable } from '@sparsify/core';
import { main, parseTrainArgs } from '@sparsify/cli';

function capture() {
  const o = { out: '', err: '' };
  return {
    o,
    io: { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s), isTTY: false, columns: 200 } },
  };
}

const gpu = cudaUsable();

test('--device parses auto / cpu / cuda (default auto); anything else exits 2', async () => {
  assert.equal(parseTrainArgs([]).device, 'auto');
  assert.equal(parseTrainArgs(['--device', 'cuda']).device, 'cuda');
  assert.equal(parseTrainArgs(['--device=cpu']).device, 'cpu');
  for (const argv of [['train', '--device', 'bogus'], ['hookpoints', 'x', '--device', 'bogus'], ['hookpoints', 'x', '--device=gpu']]) {
    const c = capture();
    assert.equal(await main(argv, c.io), 2, argv.join(' '));
    assert.match(c.o.err, /--device/);
  }
});

test('--device cuda without a usable GPU: a clear DeviceError, exit 1, nothing trained', { skip: gpu ? 'a GPU is usable here' : false }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-dev-'));
  const c = capture();
  assert.equal(await main(['train', '--device', 'cuda', '--max_examples', '8', '--save_dir', dir, '--run_name', 'x'], c.io), 1);
  assert.match(c.o.err, /^sparsify: error: --device cuda: device 'cuda' (needs the CUDA build|but no CUDA device is usable)/m);
  assert.doesNotMatch(c.o.err, /embedded tiny model/, 'fails before loading anything');
});

test('--device auto picks cpu without a GPU (and cuda with one) and trains', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-dev-'));
  const c = capture();
  const code = await main(['train', '--device', 'auto', '--max_examples', '8', '--batch_size', '4', '--save_dir', dir, '--run_name', 'x'], c.io);
  assert.equal(code, 0, c.o.err);
  if (gpu) assert.match(c.o.err, /--device auto: using cuda/);
  else assert.doesNotMatch(c.o.err, /using cuda/);
  assert.match(c.o.out, /done: 2 steps/);
});

test('--device auto trains on cuda with muon, multi_topk, transcode and skip_connection', { skip: gpu ? false : 'needs a usable CUDA device (the emulated pass runs it)' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-dev-'));
  const c = capture();
  const flags = ['--optimizer', 'muon', '--multi_topk', '--transcode', '--skip_connection', '--hookpoints', 'h.0.mlp'];
  assert.equal(await main(['train', ...flags, '--max_examples', '8', '--batch_size', '4', '--save_dir', dir, '--run_name', 'm'], c.io), 0, c.o.err);
  assert.match(c.o.err, /--device auto: using cuda/);
  assert.match(c.o.out, /done: 2 steps/);
});
