// device 'cuda' where it cannot run: the CPU build (what loads on this kind of machine) and the
// CUDA build without a device (SPARSIFY_DEVICE=cuda keeps it loaded). Both must give a typed
// DeviceError (code ERR_SPARSIFY_CUDA_UNAVAILABLE) from every entry point, and the new native
// functions of the resident CUDA state must validate their arguments before any GPU work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { cudaUsable, DeviceError, SparseCoder } from '@sparsify/core';
import { Trainer, trainConfig } from '@sparsify/train';

import { FIXTURES as SAE_FIXTURES } from '../sae/helpers.js';
import { fixtureDataset, tinyModel } from '../train/helpers.js';
import { cudaBuildPath, probeCudaBuild, repoRoot } from './cuda-env.js';

const gpuHere = cudaUsable() ? 'a usable CUDA device is present: the no-device path cannot be exercised' : false;

function isUnavailable(e: unknown): boolean {
  assert.ok(e instanceof DeviceError, `expected a DeviceError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
  assert.equal((e as DeviceError).code, 'ERR_SPARSIFY_CUDA_UNAVAILABLE');
  assert.match((e as Error).message, /device 'cuda'/);
  return true;
}

test("in this process (no usable GPU): every way to a cuda coder is a DeviceError", { skip: gpuHere }, async () => {
  const dir = join(SAE_FIXTURES, 'sae_d64_k8', 'state');
  await assert.rejects(SparseCoder.create(16, { numLatents: 64, k: 4 }, { device: 'cuda' }), isUnavailable);
  await assert.rejects(SparseCoder.loadFromDisk(dir, { device: 'cuda' }), isUnavailable);
  await assert.rejects(SparseCoder.loadMany(join(SAE_FIXTURES, 'sae_d64_k8'), { local: true, layers: ['state'], device: 'cuda' }), isUnavailable);
  await assert.rejects(SparseCoder.create(16, { numLatents: 64, k: 4 }, { device: 'tpu' as never }), /unknown device 'tpu'/);
  const t = new Trainer(trainConfig({ batchSize: 4, logToWandb: false, saveDir: '/nonexistent', sae: { expansionFactor: 2, k: 4 } }), fixtureDataset(8), await tinyModel(), { device: 'cuda', save: false });
  await assert.rejects(t.init(), isUnavailable);
});

const noCudaBuild = !existsSync(cudaBuildPath)
  ? `no CUDA build at ${cudaBuildPath} (node scripts/build-native.mjs --cuda; needs nvcc)`
  : (probeCudaBuild()?.devices ?? 0) > 0
    ? 'a CUDA device is present: the no-device path cannot be exercised'
    : false;

test('the CUDA build without a device: DeviceError from SparseCoder; cudaSaeCreate validates first', { skip: noCudaBuild }, () => {
  const code = `
    import { SparseCoder, Tensor, native, nativePath, DeviceError } from '@sparsify/core';
    const out = { path: nativePath() };
    const err = async (f) => { try { await f(); return 'no error'; } catch (e) { return (e?.code ?? e?.name) + ': ' + e?.message; } };
    out.create = await err(() => SparseCoder.create(16, { numLatents: 64, k: 4 }, { device: 'cuda' }));
    out.load = await err(() => SparseCoder.loadFromDisk(${JSON.stringify(join(SAE_FIXTURES, 'sae_d64_k8', 'state'))}, { device: 'cuda' }));
    const n = native();
    const x = Tensor.zeros([4, 16]);
    out.createArg = await err(() => n.cudaSaeCreate({ bEnc: x.handle }, { k: 1 }));
    out.fns = ['cudaSaeCreate', 'cudaEncoderCreate'].filter((f) => typeof n[f] !== 'function');
    // The state's calls are methods of the object cudaSaeCreate resolves to (CudaSaeState).
    // (cudaTotalVariance stays: a stateless reduction the SAELens kinds' step reports its FVU with;
    // the TopK step computes its variance inside the state's step, batchVariance.)
    out.gone = ['cudaSaeEncode', 'cudaSaeForwardBackward', 'cudaSaeApply', 'cudaSaeLoadState', 'cudaSaeLerp', 'cudaSaeTakeFired', 'cudaSaeDispose'].filter((f) => f in n);
    console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--conditions=sparsify-source', '--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: repoRoot,
    // The build under test: $SPARSIFY_NATIVE when set (e.g. the emulated device without devices).
    env: { ...process.env, SPARSIFY_DEVICE: 'cuda', SPARSIFY_NATIVE: process.env.SPARSIFY_NATIVE },
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `child failed:\n${r.stdout}\n${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.equal(out.path, cudaBuildPath);
  assert.deepEqual(out.fns, [], 'every new binding is exported');
  assert.match(out.create, /^ERR_SPARSIFY_CUDA_UNAVAILABLE: SparseCoder: device 'cuda' but no CUDA device is usable \(cudaError/);
  assert.match(out.load, /^ERR_SPARSIFY_CUDA_UNAVAILABLE: /);
  assert.match(out.createArg, /^ERR_SPARSIFY_VALUE: params.wEnc is required/);
  assert.deepEqual(out.gone, [], 'no free functions over the state; the batch variance is computed inside the step (batchVariance)');
});
