#!/usr/bin/env node
// Runs the test suite with node's test runner against the TypeScript sources (no build step:
// the `sparsify-source` export condition + tsx). An explicit file list, since Node 20's
// `node --test` finds no .ts files by itself and would still exit 0.
//   node scripts/test.mjs [files...]     default: every test/**/*.test.ts
//   node scripts/test.mjs --emu [files...] run files (default: the CUDA suites, then the no-device
//                                          tests without a device, then the kernel parity suites
//                                          on sm_80) against the emulated CUDA device
//                                          (native/build-cuda-emu, built first)
//   SPARSIFY_TEST_LONG=1                  include the long suites (test/long/)
//   SPARSIFY_TEST_EMU=0                   the default run skips its second pass on the emulated device
// The default run (no arguments) runs everything but the device-only CUDA suites against the addon
// the loader picks, then the CUDA suites on the emulated CUDA device (sm_90, then the kernel
// parity suites on sm_80), so every CUDA kernel executes without a GPU; it ends with a summary of
// every pass and of the tests skipped in all the passes that ran them.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

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

// The CUDA suites by what they need. Device suites hold only tests that need a usable CUDA device:
// in the default run they run on the emulated device and, unless the first pass's addon sees a
// real GPU, are left out of the first pass (where they could only skip). Mixed suites also hold
// "no device" tests (the CPU build, the CUDA build without a device): they run in several passes,
// each test skipping precisely where its condition fails, so that across the passes each one runs
// at least once (the summary lists any that did not).
// Every test/cuda suite is a device suite unless it is named here, so a new CUDA suite can never
// be left out of the emulated pass.
const cudaSuite = (n) => join('test', 'cuda', `${n}.test.ts`);
const mixedSuites = ['load', 'model-forward'].map(cudaSuite).concat(
  join('test', 'core', 'device-tensor.test.ts'),
  join('test', 'cli', 'device.test.ts'),
);
// The suites with tests of the CUDA build without a device.
const noDeviceSuites = ['load', 'coder-device', 'model-forward'].map(cudaSuite).concat(
  join('test', 'core', 'device-tensor.test.ts'),
);
// Suites that need no device at all: the emulator's own unit tests, the launch macro, the float64 reference.
const hostSuites = ['emu-device', 'launch-macro', 'sae-reference'].map(cudaSuite);
const deviceSuites = collect(join(root, 'test', 'cuda'), []).filter(
  (f) => !mixedSuites.includes(f) && !noDeviceSuites.includes(f) && !hostSuites.includes(f),
);
const emuSuites = () => [...deviceSuites, ...mixedSuites];

const passes = [];
function runFiles(label, files, env = process.env, concurrency = undefined) {
  const dest = join(mkdtempSync(join(tmpdir(), 'spx-test-')), 'results.jsonl');
  const r = spawnSync(
    process.execPath,
    ['--conditions=sparsify-source', '--import', 'tsx', '--test', '--test-timeout=600000',
     `--test-reporter=${process.stdout.isTTY ? 'spec' : 'tap'}`, '--test-reporter-destination=stdout',
     `--test-reporter=${pathToFileURL(join(root, 'scripts', 'test-summary-reporter.mjs')).href}`, `--test-reporter-destination=${dest}`,
     ...(concurrency ? [`--test-concurrency=${concurrency}`] : []), ...files],
    { cwd: root, stdio: 'inherit', env },
  );
  const results = existsSync(dest)
    ? readFileSync(dest, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    : [];
  rmSync(dirname(dest), { recursive: true, force: true });
  passes.push({ label, results, status: r.status ?? 1 });
  return r.status ?? 1;
}

// One line per pass (tests / pass / fail / skipped), then the tests skipped in every pass that ran
// them, with their reasons: what this run did not check at all.
function printSummary() {
  if (passes.length === 0) return;
  const key = (t) => `${relative(root, t.file)} > ${t.name}`;
  const ran = new Set(), skipped = new Map();
  console.log('\n[sparsify] test summary');
  for (const p of passes) {
    const n = (o) => p.results.filter((t) => t.outcome === o).length;
    console.log(`  ${p.label}: tests ${p.results.length}, pass ${n('pass')}, fail ${n('fail')}, skipped ${n('skip')}${p.status && !n('fail') ? ` (exit ${p.status})` : ''}`);
    for (const t of p.results) {
      if (t.outcome === 'skip') skipped.set(key(t), t.skip);
      else ran.add(key(t));
    }
  }
  const never = [...skipped].filter(([k]) => !ran.has(k));
  const cuda = never.filter(([k]) => /^test\/cuda\/|device/.test(k));
  console.log(`  skipped in every pass: ${never.length} (CUDA tests: ${cuda.length})`);
  for (const [k, why] of never) console.log(`    ${k}${why ? ` -- ${why}` : ''}`);
  return cuda.length;
}

function runOnEmulator(files, full = true) {
  const b = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--cuda-emu'], { cwd: root, stdio: 'inherit' });
  if (b.status !== 0) return b.status ?? 1;
  const addon = join(root, 'native', 'build-cuda-emu', 'Release', 'sparsify.node');
  console.log(`[sparsify] the CUDA suites on the emulated CUDA device (sm_90: the wgmma paths; ${relative(root, addon)})`);
  // The emulator runs a kernel's blocks on one core: two test files at a time use both cores.
  const parallel = Math.max(1, Math.min(4, availableParallelism()));
  const sm90 = runFiles('emulated sm_90', files, { ...process.env, SPARSIFY_NATIVE: addon }, parallel);
  if (!full) return sm90;
  // The no-device paths of the CUDA build (typed DeviceErrors, argument checks before GPU work) on
  // the emulated build with no device, as a machine whose driver sees no GPU.
  console.log('[sparsify] the no-device tests on the emulated CUDA build without a device (SPARSIFY_CUDA_EMU_DEVICES=0)');
  const noDevice = runFiles('emulated, no device', noDeviceSuites, { ...process.env, SPARSIFY_NATIVE: addon, SPARSIFY_CUDA_EMU_DEVICES: '0' }, parallel);
  // The kernel parity suites once more on an sm_80 device, where the mma.sync paths run.
  console.log('[sparsify] the kernel parity suites on the emulated sm_80 device (the mma.sync paths)');
  const sm80Files = ['parity', 'gemm-path', 'sae-train'].map((n) => join('test', 'cuda', `${n}.test.ts`));
  const sm80 = runFiles('emulated sm_80', sm80Files, { ...process.env, SPARSIFY_NATIVE: addon, SPARSIFY_CUDA_EMU_ARCH: 'sm_80' }, parallel);
  return sm90 || noDevice || sm80;
}

const args = process.argv.slice(2);
if (args[0] === '--emu') {
  const status = args.length > 1 ? runOnEmulator(args.slice(1), false) : runOnEmulator(emuSuites());
  printSummary();
  process.exit(status);
}

// Whether the first pass's addon sees a real CUDA device: then the device suites run there too.
function realDevice() {
  const p = process.env.SPARSIFY_NATIVE ?? join(root, 'native', 'build-cuda', 'Release', 'sparsify.node');
  if (process.env.SPARSIFY_DEVICE === 'cpu' || !existsSync(p)) return false;
  try {
    const a = createRequire(import.meta.url)(p);
    return Boolean(a.buildInfo?.().cuda) && a.cudaProbe().devices > 0;
  } catch {
    return false;
  }
}

const withEmu = args.length === 0 && process.env.SPARSIFY_TEST_EMU !== '0';
const all = args.length > 0 ? args : collect(join(root, 'test'), []);
const files = withEmu && !realDevice() ? all.filter((f) => !deviceSuites.includes(f)) : all;
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const status = runFiles(withEmu ? 'first pass (the addon the loader picks)' : 'tests', files);
const emuStatus = withEmu ? runOnEmulator(emuSuites()) : 0;
const cudaNeverRan = printSummary();
// With the nvcc build present every CUDA test runs in some pass (only the loader-fallback test
// needs that build): a CUDA test skipped everywhere is then a gap in the passes, and fails the run.
if (withEmu && cudaNeverRan > 0 && existsSync(join(root, 'native', 'build-cuda', 'Release', 'sparsify.node'))) {
  console.error(`[sparsify] ${cudaNeverRan} CUDA test(s) ran in no pass (listed above)`);
  process.exit(emuStatus || status || 1);
}
process.exit(emuStatus || status);
