// The CUDA variant of the addon on a machine without a usable GPU: it must load, report "no
// device" cleanly, reject GPU work with a typed DeviceError, and the core loader must fall back
// to the CPU build. With a GPU, the probe must report the device instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { cudaBuildPath, cpuBuildPath, probeCudaBuild, repoRoot } from './cuda-env.js';

const noBuild = existsSync(cudaBuildPath)
  ? false
  : `no CUDA build at ${cudaBuildPath} (node scripts/build-cuda-if-available.mjs builds it when nvcc is found)`;

// Runs a module snippet in a fresh node with the repository's test conditions.
function runChild(code: string, env: Record<string, string | undefined> = {}) {
  const r = spawnSync(
    process.execPath,
    ['--conditions=sparsify-source', '--import', 'tsx', '--input-type=module', '-e', code],
    { cwd: repoRoot, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120_000 },
  );
  assert.equal(r.status, 0, `child failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  const last = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(last);
}

test('the CUDA build loads and its probe is well formed', { skip: noBuild }, () => {
  const out = runChild(
    `import { createRequire } from 'node:module';
     const a = createRequire(import.meta.url)(${JSON.stringify(cudaBuildPath)});
     console.log(JSON.stringify({ info: a.buildInfo(), probe: a.cudaProbe(), maxK: a.testing.cudaFusedTopkMaxK() }));`,
  );
  assert.equal(out.info.cuda, true);
  assert.ok(Number.isInteger(out.probe.runtimeVersion) && out.probe.runtimeVersion >= 13000, JSON.stringify(out.probe));
  assert.ok(Number.isInteger(out.probe.devices) && out.probe.devices >= 0);
  if (out.probe.devices === 0) {
    assert.match(out.probe.error, /cudaError(InsufficientDriver|NoDevice)|no CUDA-capable device|driver/i);
    assert.equal(out.maxK, 0);
    assert.equal(out.probe.name, undefined);
  } else {
    assert.equal(typeof out.probe.name, 'string');
    assert.match(out.probe.computeCapability, /^\d+\.\d+$/);
    assert.ok(out.maxK >= 32, `fused TopK must fit k >= 32, got ${out.maxK}`);
  }
});

test('without a device, GPU work rejects with a typed DeviceError and CPU work still runs', { skip: noBuild }, (t) => {
  const probe = probeCudaBuild()!;
  if (probe.devices > 0) return t.skip(`a CUDA device is present (${probe.name}); the no-device path cannot be exercised`);
  // SPARSIFY_DEVICE=cuda makes the loader keep the CUDA build even without a device (the build
  // under test: $SPARSIFY_NATIVE when set, e.g. the emulated device with SPARSIFY_CUDA_EMU_DEVICES=0).
  const out = runChild(
    `import { Tensor, nativePath, native, matmul, DeviceError, backend, cudaProbe } from '@sparsify/core';
     const a = Tensor.from(new Float32Array([1, 2, 3, 4]), [2, 2]);
     let err;
     try { await native().testing.cudaMatmul(a.handle, a.handle, { bTrans: true }); } catch (e) { err = e; }
     const c = await matmul(a, a, { bTrans: true });
     let err2;
     try { await native().cudaEncoderCreate(a.handle, Tensor.from(new Float32Array(2), [2]).handle); } catch (e) { err2 = e; }
     console.log(JSON.stringify({ path: nativePath(), backend: backend(), probe: cudaProbe(), createCode: err2?.code,
       isDeviceError: err instanceof DeviceError, name: err?.name,
       code: err?.code, message: err?.message, cpu: [...c.toFloat32Array()] }));`,
    { SPARSIFY_DEVICE: 'cuda', SPARSIFY_NATIVE: process.env.SPARSIFY_NATIVE },
  );
  assert.equal(out.path, cudaBuildPath);
  assert.equal(out.backend, 'cuda');
  assert.equal(out.probe.devices, 0);
  assert.equal(out.isDeviceError, true, JSON.stringify(out));
  assert.equal(out.name, 'DeviceError');
  assert.equal(out.createCode, 'ERR_SPARSIFY_CUDA_UNAVAILABLE');
  assert.equal(out.code, 'ERR_SPARSIFY_CUDA_UNAVAILABLE');
  assert.match(out.message, /no usable CUDA device: cudaError\w+/);
  assert.deepEqual(out.cpu, [5, 11, 11, 25]);
});

// The loader's own candidate, native/build-cuda (not $SPARSIFY_NATIVE, which the loader takes as is).
const loaderCudaBuild = join(repoRoot, 'native', 'build-cuda', 'Release', 'sparsify.node');
test('the core loader falls back to the CPU build when the CUDA build sees no device', {
  skip: existsSync(loaderCudaBuild) ? false : `no CUDA build at ${loaderCudaBuild} (the loader's candidate; needs nvcc)`,
}, (t) => {
  const probe = createRequire(import.meta.url)(loaderCudaBuild).cudaProbe() as { devices: number; name?: string };
  if (probe.devices > 0) return t.skip(`a CUDA device is present (${probe.name}); the loader keeps the CUDA build`);
  if (!existsSync(cpuBuildPath)) return t.skip(`no CPU build at ${cpuBuildPath}`);
  const out = runChild(
    `import { Tensor, nativePath, native, matmul, backend, cudaProbe } from '@sparsify/core';
     const a = Tensor.from(new Float32Array([1, 2, 3, 4]), [2, 2]);
     const c = await matmul(a, a);
     console.log(JSON.stringify({ path: nativePath(), cuda: native().buildInfo().cuda, backend: backend(),
       probe: cudaProbe() ?? null, c: [...c.toFloat32Array()] }));`,
    { SPARSIFY_DEVICE: undefined, SPARSIFY_NATIVE: undefined },
  );
  assert.equal(out.path, cpuBuildPath);
  assert.equal(out.cuda, false);
  assert.equal(out.backend, 'cpu');
  assert.equal(out.probe, null);
  assert.deepEqual(out.c, [7, 10, 15, 22]);
});

test('bad arguments to CUDA ops are typed errors raised before any GPU work', { skip: noBuild }, () => {
  const out = runChild(
    `import { createRequire } from 'node:module';
     const a = createRequire(import.meta.url)(${JSON.stringify(cudaBuildPath)});
     const f = (d, s, dt = 'float32') => a.tensorFromArray(d, s, dt);
     const res = {};
     const tryIt = (name, fn) => { try { fn(); res[name] = 'no error'; } catch (e) { res[name] = e.code + ': ' + e.message; } };
     tryIt('index', () => a.testing.cudaDecode(f(new Float32Array(2), [1, 2]), f(new Int32Array([0, 9]), [1, 2], 'int32'), f(new Float32Array(8), [4, 2])));
     tryIt('k', () => a.testing.cudaTopkEncode(f(new Float32Array(4), [2, 2]), f(new Float32Array(8), [4, 2]), f(new Float32Array(4), [4]), { k: 5 }));
     tryIt('groupmax', () => a.testing.cudaTopkEncode(f(new Float32Array(4), [2, 2]), f(new Float32Array(6), [3, 2]), f(new Float32Array(3), [3]), { k: 2, activation: 'groupmax' }));
     tryIt('shape', () => a.testing.cudaMatmul(f(new Float32Array(6), [2, 3]), f(new Float32Array(4), [2, 2]), { bTrans: true }));
     tryIt('gqa', () => a.testing.cudaAttention(f(new Float32Array(24), [2, 3, 4]), f(new Float32Array(16), [2, 2, 4]), f(new Float32Array(16), [2, 2, 4])));
     tryIt('encoder', () => a.cudaEncoderCreate(f(new Float32Array(8), [4, 2]), f(new Float32Array(3), [3])));
     res.encoderFns = ['cudaEncoderEncode', 'cudaEncoderDispose', 'cudaDecoderDecode', 'cudaDecoderDispose'].filter((n) => n in a || n in a.testing);
     tryIt('compute', () => a.testing.cudaMatmul(f(new Float32Array(4), [2, 2]), f(new Float32Array(4), [2, 2]), { computeDtype: 'float64' }));
     tryIt('matmulRows', () => a.testing.cudaMatmul(f(new Float32Array(8388609), [8388609, 1]), f(new Float32Array(1), [1, 1]), { bTrans: true }));
     tryIt('bench', () => a.testing.cudaBench('gemm', { m: 0, n: 8, k: 8 }));
     console.log(JSON.stringify(res));`,
  );
  assert.match(out.index, /^ERR_SPARSIFY_VALUE: indices\[1\] = 9 is not a latent index in \[0, 4\)/);
  assert.match(out.k, /^ERR_SPARSIFY_VALUE: k must be in \[1, num_latents=4\], got 5/);
  assert.match(out.groupmax, /^ERR_SPARSIFY_VALUE: groupmax needs num_latents \(3\) divisible by k \(2\)/);
  assert.match(out.shape, /^ERR_SPARSIFY_SHAPE: cudaMatmul: a is \[2, 3\]/);
  assert.match(out.gqa, /^ERR_SPARSIFY_SHAPE: query heads \(3\) must be a multiple of kv heads \(2\)/);
  assert.match(out.compute, /^ERR_SPARSIFY_DTYPE: computeDtype must be/);
  assert.match(out.encoder, /^ERR_SPARSIFY_SHAPE: bEnc/);
  // The resident encoder's and decoder's calls are methods of their objects (CudaEncoder, CudaDecoder).
  assert.deepEqual(out.encoderFns, []);
  assert.match(out.matmulRows, /^ERR_SPARSIFY_VALUE: cudaMatmul: a has 8388609 rows .* up to 8388480 rows/);
  assert.match(out.bench, /^ERR_SPARSIFY_VALUE: cudaBench gemm: m, n, k must be >= 1/);
});

test('cudaSaeCreate validates wSkip (skip_connection) before any GPU work', { skip: noBuild }, () => {
  const out = runChild(
    `import { createRequire } from 'node:module';
     const a = createRequire(import.meta.url)(${JSON.stringify(cudaBuildPath)});
     const f = (n, s, dt = 'float32') => a.tensorFromArray(dt === 'int32' ? new Int32Array(n) : new Float32Array(n), s, dt);
     const p = (wSkip) => ({ wEnc: f(16, [8, 2]), bEnc: f(8, [8]), wDec: f(16, [8, 2]), bDec: f(2, [2]), wSkip });
     const res = {};
     const tryIt = async (name, fn) => { try { await fn(); res[name] = 'no error'; } catch (e) { res[name] = e.code + ': ' + e.message; } };
     await tryIt('shape', () => a.cudaSaeCreate(p(f(6, [2, 3])), { k: 2 }));
     await tryIt('dtype', () => a.cudaSaeCreate(p(f(4, [2, 2], 'int32')), { k: 2 }));
     await tryIt('valid', () => a.cudaSaeCreate(p(f(4, [2, 2])), { k: 2 }));
     console.log(JSON.stringify(res));`,
  );
  assert.match(out.shape, /^ERR_SPARSIFY_SHAPE: .*wSkip.*\[2, 3\]/);
  assert.match(out.dtype, /^ERR_SPARSIFY_DTYPE: .*wSkip/);
  // A well-formed wSkip passes validation; without a GPU the call then fails as GPU work does.
  if ((probeCudaBuild()?.devices ?? 0) > 0) assert.equal(out.valid, 'no error');
  else assert.match(out.valid, /^ERR_SPARSIFY_CUDA_UNAVAILABLE: /);
});
