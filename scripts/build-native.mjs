#!/usr/bin/env node
// Builds the native addon with cmake-js (Node-API mode: no header download).
//   node scripts/build-native.mjs            CPU variant into native/build-cpu (incremental)
//   node scripts/build-native.mjs --cuda     also the CUDA variant into native/build-cuda (needs nvcc)
//   node scripts/build-native.mjs --cuda-emu also the CUDA sources on the emulated device into
//                                            native/build-cuda-emu (host compiler only; a test build)
//   env SPARSIFY_BUILD_DIR=dir               another output folder (parallel work trees)
//   env SPARSIFY_SKIP_NATIVE=1               skip (e.g. when a prebuilt platform package is used)
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
if (process.env.SPARSIFY_SKIP_NATIVE === '1') {
  console.log('[sparsify] SPARSIFY_SKIP_NATIVE=1: not building the native addon');
  process.exit(0);
}
const require = createRequire(import.meta.url);
let cmakeJs;
try {
  cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
} catch {
  console.error('[sparsify] cmake-js is not installed; run `npm install` at the repository root first');
  process.exit(1);
}

function build(variant, extra) {
  const out = process.env.SPARSIFY_BUILD_DIR ?? join('native', `build-${variant}`);
  const cmd = [cmakeJs, 'compile', '--directory', root, '--out', out, '--config', 'Release',
    '--parallel', String(availableParallelism()), ...extra];
  console.log(`[sparsify] building the ${variant} addon: cmake-js ${cmd.slice(1).join(' ')}`);
  const r = spawnSync(process.execPath, cmd, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`[sparsify] the ${variant} build failed (exit ${r.status})`);
    process.exit(r.status ?? 1);
  }
}

build('cpu', ['--CDSPARSIFY_CUDA=OFF']);
if (args.has('--cuda')) build('cuda', ['--CDSPARSIFY_CUDA=ON']);
if (args.has('--cuda-emu')) build('cuda-emu', ['--CDSPARSIFY_CUDA=EMU']);
