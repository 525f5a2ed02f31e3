// Tensors on the 'cuda' device: creation, moves, reads back, and the guard that keeps CPU
// kernels from ever reading device memory. Without a GPU: the typed errors of the CPU build and
// of the CUDA build. With a GPU: round trips and a cuda op fed a device tensor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

import { DeviceError, Tensor, ValueError, backend, matmul, native } from '@sparsify/core';

import { cudaAddon, cudaBuildPath, probeCudaBuild, repoRoot } from '../cuda/cuda-env.js';

const data = new Float32Array([1, -2, 3.5, 4, 0.25, -6]);

test('cpu: to("cpu") copies, bad device names are a ValueError', async () => {
  const t = Tensor.from(data, [2, 3]);
  assert.equal(t.device, 'cpu');
  const c = await t.to('cpu');
  assert.deepEqual(c.toFloat32Array(), data);
  assert.throws(() => Tensor.zeros([2], { device: 'tpu' as never }), ValueError);
  // dtype conversion still goes through to()
  const h = await t.to('bfloat16');
  assert.equal(h.dtype, 'bfloat16');
  assert.deepEqual(h.toFloat32Array(), data);
});

test('CPU-only build: device "cuda" is a DeviceError naming the missing backend', { skip: backend() === 'cuda' ? 'the CUDA build is loaded' : false }, async () => {
  if (native().buildInfo().cuda) return;
  assert.throws(() => Tensor.from(data, [2, 3], { device: 'cuda' }), (e: unknown) => e instanceof DeviceError && /no CUDA backend/.test((e as Error).message));
  assert.throws(() => Tensor.zeros([4], { device: 'cuda' }), DeviceError);
  const t = Tensor.from(data, [2, 3]);
  await assert.rejects(t.to('cuda'), (e: unknown) => e instanceof DeviceError && /no CUDA backend/.test((e as Error).message));
  // the native guard itself (not only the TS check)
  assert.throws(() => native().tensorToDevice(t.handle, 'cuda', true), (e: unknown) => (e as { code?: string }).code === 'ERR_SPARSIFY_DEVICE');
});

const noCudaBuild = existsSync(cudaBuildPath) ? false : `no CUDA build at ${cudaBuildPath}`;

test('CUDA build without a device: moving to cuda rejects with ERR_SPARSIFY_CUDA_UNAVAILABLE', { skip: noCudaBuild }, (t) => {
  const probe = probeCudaBuild()!;
  if (probe.devices > 0) return t.skip(`a CUDA device is present (${probe.name})`);
  const code = `
    import { Tensor, DeviceError } from '@sparsify/core';
    const out = {};
    try { Tensor.from(new Float32Array(4), [4], { device: 'cuda' }); } catch (e) { out.sync = [e instanceof DeviceError, e.code]; }
    try { await Tensor.zeros([4]).to('cuda'); } catch (e) { out.async = [e instanceof DeviceError, e.code]; }
    out.cpuStillWorks = Array.from(Tensor.from(new Float32Array([1, 2]), [2]).toFloat32Array());
    const { native } = await import('@sparsify/core');
    const x = Tensor.from(new Float32Array(6), [3, 2]);
    try { await native().cudaGatherRows(x.handle, Tensor.from(Int32Array.from([3]), [1]).handle); } catch (e) { out.gatherBadIndex = [e.name, e.code]; }
    try { await native().cudaGatherRows(x.handle, Tensor.from(Int32Array.from([1]), [1]).handle); } catch (e) { out.gatherNoDevice = e.code; }
    console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--conditions=sparsify-source', '--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: repoRoot,
    env: { ...process.env, SPARSIFY_NATIVE: cudaBuildPath },
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.deepEqual(out.sync, [true, 'ERR_SPARSIFY_CUDA_UNAVAILABLE']);
  assert.deepEqual(out.async, [true, 'ERR_SPARSIFY_CUDA_UNAVAILABLE']);
  assert.deepEqual(out.cpuStillWorks, [1, 2]);
  assert.deepEqual(out.gatherBadIndex, ['ValueError', 'ERR_SPARSIFY_VALUE']);  // checked before any GPU work
  assert.equal(out.gatherNoDevice, 'ERR_SPARSIFY_CUDA_UNAVAILABLE');
});

const gpu = cudaAddon();

test('GPU: round trips, reads back, clone and reshape on the device', { skip: gpu.skip ?? false }, async () => {
  const d = Tensor.from(data, [2, 3], { device: 'cuda' });
  assert.equal(d.device, 'cuda');
  assert.deepEqual(d.toFloat32Array(), data);
  const i = Tensor.from(Int32Array.from([3, -1, 7]), [3], { device: 'cuda' });
  assert.deepEqual(Array.from(i.toInt32Array()), [3, -1, 7]);
  const back = await d.to('cpu');
  assert.equal(back.device, 'cpu');
  assert.deepEqual(back.toFloat32Array(), data);
  const c = d.clone();
  d.dispose();
  assert.equal(c.device, 'cuda');
  assert.deepEqual(c.reshape([3, 2]).toFloat32Array(), data);
  const z = Tensor.zeros([5], { device: 'cuda' });
  assert.deepEqual(Array.from(z.toFloat32Array()), [0, 0, 0, 0, 0]);
});

test('GPU: CPU kernels reject cuda tensors by argument name; cuda ops take them directly', { skip: gpu.skip ?? false }, async () => {
  const host = Tensor.from(data, [2, 3]);
  const dev = await host.to('cuda');
  await assert.rejects(matmul(dev, host, { bTrans: true }), (e: unknown) => e instanceof DeviceError && /cuda tensor/.test((e as Error).message));
  await assert.rejects(dev.to('bfloat16'), DeviceError);
  const fromHost = native().testing.cudaMatmul(host.handle, host.handle, { bTrans: true });
  const fromDev = native().testing.cudaMatmul(dev.handle, dev.handle, { bTrans: true });
  const [a, b] = await Promise.all([fromHost, fromDev]);
  assert.deepEqual(new Tensor(b).toFloat32Array(), new Tensor(a).toFloat32Array());
});

test('GPU: cudaGatherRows (exclude_tokens on device activations) equals the CPU gather', { skip: gpu.skip ?? false }, async () => {
  const x = Tensor.from(Float32Array.from({ length: 7 * 5 }, (_, i) => Math.cos(i)), [7, 5]);
  const idx = Tensor.from(Int32Array.from([6, 0, 3, 3]), [4]);
  const dx = await x.to('cuda');
  const got = new Tensor(await native().cudaGatherRows(dx.handle, idx.handle));
  assert.equal(got.device, 'cuda');
  const want = new Tensor(await native().trainGatherRows(x.handle, idx.handle));
  assert.deepEqual(got.toFloat32Array(), want.toFloat32Array());
  // validated on the JS thread before any GPU work: a synchronous throw, not a rejection
  assert.throws(() => native().cudaGatherRows(dx.handle, Tensor.from(Int32Array.from([7]), [1]).handle), ValueError);
});

// a CPU function reached from inside a cuda* call (here a JS getter on the
// options object) must still reject device tensors; the cuda* call's permission used to leak
// into it through the thread-local flag, and the CPU kernel then read a device pointer.
test('GPU: a CPU function called from inside a cuda* call still rejects cuda tensors', { skip: gpu.skip ?? false }, async () => {
  const host = Tensor.from(data, [2, 3]);
  const dev = await host.to('cuda');
  let inner: unknown = 'getter not called';
  const opts = {
    get bTrans() {
      try {
        native().testing.modelActivation(dev.handle, 'relu');
        inner = 'accepted a cuda tensor';
      } catch (e) {
        inner = e;
      }
      return true;
    },
  };
  await native().testing.cudaMatmul(host.handle, host.handle, opts);
  assert.ok(inner instanceof DeviceError, String(inner));
  assert.match((inner as Error).message, /cuda tensor/);
});

// cudaMatmul converted its bias with a host dtype conversion, so a device bias
// in bfloat16 was a DeviceError; it is now widened on the device.
test('GPU: cudaMatmul takes a host or device bias of any float dtype', { skip: gpu.skip ?? false }, async () => {
  const a = Tensor.from(Float32Array.from({ length: 3 * 40 }, (_, i) => Math.sin(i)), [3, 40]);
  const b = Tensor.from(Float32Array.from({ length: 5 * 40 }, (_, i) => Math.cos(i)), [5, 40]);
  const bias = Tensor.from(Float32Array.from([0.5, -1, 2, 0.25, 3]), [5], { dtype: 'bfloat16' });
  const plain = new Tensor(await native().testing.cudaMatmul(a.handle, b.handle, { bTrans: true })).toFloat32Array();
  const devBias = await bias.to('cuda');
  for (const bs of [bias, devBias]) {
    const got = new Tensor(await native().testing.cudaMatmul(a.handle, b.handle, { bTrans: true, bias: bs.handle })).toFloat32Array();
    const bv = bias.toFloat32Array();
    got.forEach((v, i) => assert.equal(v, Math.fround(plain[i] + bv[i % 5]), `${bs.device} bias at ${i}`));  // one f32 add
  }
});
