// The emulated CUDA device's own unit tests (native/cuda/emu/test): execution model, runtime,
// guard zones, and each emulated PTX instruction against the PTX ISA's layout tables. They are
// C++ programs built here with the host compiler (about half a minute) and run once; every case
// runs in its own forked process so sticky errors stay isolated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { repoRoot } from './cuda-env.js';

const emuDir = join(repoRoot, 'native', 'cuda', 'emu');
const cxx = process.env.CXX ?? 'c++';
const haveCxx = spawnSync(cxx, ['--version'], { encoding: 'utf8' }).status === 0;

test('emulated CUDA device: unit tests of the runtime and the PTX instructions', { skip: haveCxx ? false : `no C++ compiler (${cxx})`, timeout: 600_000 }, () => {
  const out = mkdtempSync(join(tmpdir(), 'spx-emu-test-'));
  try {
    const sources = [
      ...readdirSync(emuDir).filter((f) => f.endsWith('.cpp')).map((f) => join(emuDir, f)),
      ...readdirSync(join(emuDir, 'test')).filter((f) => f.endsWith('.cpp')).map((f) => join(emuDir, 'test', f)),
    ];
    const exe = join(out, 'emu_test');
    const build = spawnSync(
      cxx,
      ['-std=c++17', '-O0', '-Wall', '-Werror', '-ffp-contract=off', '-DSPARSIFY_CUDA_EMU', `-I${join(emuDir, 'include')}`,
        `-I${join(emuDir, '..')}`, `-I${join(emuDir, 'test')}`, ...sources, '-o', exe],
      { encoding: 'utf8' },
    );
    assert.equal(build.status, 0, `building the emulator tests failed:\n${build.stderr}`);
    const run = spawnSync(exe, [], { encoding: 'utf8', timeout: 300_000 });
    const lines = run.stdout.trim().split('\n');
    const failed = lines.filter((l) => l.startsWith('FAIL'));
    assert.deepEqual(failed, [], `${run.stdout}\n${run.stderr}`);
    assert.equal(run.status, 0, run.stderr);
    const passed = lines.filter((l) => l.startsWith('ok ')).length;
    assert.ok(passed >= 35, `only ${passed} cases ran:\n${run.stdout}`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
