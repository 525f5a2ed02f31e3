#!/usr/bin/env node
// Runs the test suite with node's test runner against the TypeScript sources (no build step:
// the `sparsify-source` export condition + tsx). An explicit file list, since Node 20's
// `node --test` finds no .ts files by itself and would still exit 0.
//   node scripts/test.mjs [files...]     default: every test/**/*.test.ts
//   node scripts/test.mjs --emu [files...] run files (default: the CUDA suites) against the emulated
//                                          CUDA device (native/build-cuda-emu, built first)
//   SPARSIFY_TEST_LONG=1                  include the long suites (test/long/)
//   SPARSIFY_TEST_EMU=0                   the default run skips its second pass on the emulated device
// The default run (no arguments) runs everything against the addon the loader picks, then the
// CUDA suites again on the emulated CUDA device, so every CUDA kernel executes without a GPU.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const long = process.env.SPARSIFY_TEST_LONG === '1';

function collect(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name === 'fixtures' || name === 'node_modules') continue;
      if (name === 'long' && !long) continue;
      collect(p, out);
    } else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out;
}

// CI compiles the CUDA variant on every run (when nvcc is present) so GPU code never rots;
// test/cuda/load.test.ts then checks it loads without a GPU and reports "no device" cleanly.
if (process.argv.length <= 2) {
  const cuda = spawnSync(process.execPath, [join(root, 'scripts', 'build-cuda-if-available.mjs')], { cwd: root, stdio: 'inherit' });
  if (cuda.status !== 0) process.exit(cuda.status ?? 1);
}

// The suites that exercise CUDA code: on the emulated device they run instead of skipping.
const emuSuites = () => [
  // (not the emulator's own unit tests, nor the CPU stand-in's wiring tests, which need no device)
  ...collect(join(root, 'test', 'cuda'), []).filter((f) => !/(emu-device|wiring)\.test\.ts$/.test(f)),
  join('test', 'core', 'device-tensor.test.ts'),
  join('test', 'cli', 'device.test.ts'),
];

function runFiles(files, env = process.env) {
  const r = spawnSync(
    process.execPath,
    ['--conditions=sparsify-source', '--import', 'tsx', '--test', '--test-timeout=600000', ...files],
    { cwd: root, stdio: 'inherit', env },
  );
  return r.status ?? 1;
}

function runOnEmulator(files, withSm80 = true) {
  const b = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--cuda-emu'], { cwd: root, stdio: 'inherit' });
  if (b.status !== 0) return b.status ?? 1;
  const addon = join(root, 'native', 'build-cuda-emu', 'Release', 'sparsify.node');
  console.log(`[sparsify] the CUDA suites on the emulated CUDA device (sm_90: the wgmma paths; ${relative(root, addon)})`);
  const sm90 = runFiles(files, { ...process.env, SPARSIFY_NATIVE: addon });
  // The kernel parity suites once more on an sm_80 device, where the mma.sync paths run.
  if (!withSm80) return sm90;
  console.log('[sparsify] the kernel parity suites on the emulated sm_80 device (the mma.sync paths)');
  const sm80Files = ['parity', 'gemm-path', 'sae-train'].map((n) => join('test', 'cuda', `${n}.test.ts`));
  const sm80 = runFiles(sm80Files, { ...process.env, SPARSIFY_NATIVE: addon, SPARSIFY_CUDA_EMU_ARCH: 'sm_80' });
  return sm90 || sm80;
}

const args = process.argv.slice(2);
if (args[0] === '--emu') process.exit(args.length > 1 ? runOnEmulator(args.slice(1), false) : runOnEmulator(emuSuites()));

const files = args.length > 0 ? args : collect(join(root, 'test'), []);
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const status = runFiles(files);
if (args.length > 0 || process.env.SPARSIFY_TEST_EMU === '0') process.exit(status);
process.exit(runOnEmulator(emuSuites()) || status);
