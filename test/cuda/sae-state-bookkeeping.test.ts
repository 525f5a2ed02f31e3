// The resident state's own bookkeeping (GPU): trackFired records the selected latents on the
// device (takeFired reads and clears them) exactly as didFire marks them from the
// downloaded indices, without returning the indices; batchVariance normalises a row range by the
// whole batch's variance times its share, as an explicit totalVariance does. Skipped without a GPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Tensor } from '@sparsify/core';

import { cudaAddon } from './cuda-env.js';
import { randn, rng } from './reference.js';

const { addon, skip } = cudaAddon();
const opts = { skip: skip ?? false };
const seed = Number(process.env.SPARSIFY_TEST_SEED ?? Math.floor(Math.random() * 1e9));
const tag = `(seed ${seed})`;

async function twoStates(M: number, D: number, k: number) {
  const r = rng(seed);
  const wEnc = randn(M * D, r, 1 / Math.sqrt(D)), bEnc = randn(M, r, 0.05), bDec = randn(D, r, 0.1);
  const make = () =>
    addon!.cudaSaeCreate(
      { wEnc: Tensor.from(wEnc, [M, D]).handle, bEnc: Tensor.from(bEnc, [M]).handle, wDec: Tensor.from(wEnc, [M, D]).handle, bDec: Tensor.from(bDec, [D]).handle },
      { k },
    );
  return { a: await make(), b: await make(), x: randn(48 * D, r) };
}

test('trackFired: the device records what didFire marks; the indices stay on the device', opts, async () => {
  const N = 48, D = 32, M = 256, k = 4;
  const { a, b, x } = await twoStates(M, D, k);
  const didFire = Tensor.zeros([M], { dtype: 'int32' });
  const ra = await a.forwardBackward(Tensor.from(x, [N, D]).handle, { didFire: didFire.handle });
  const rb = await b.forwardBackward(Tensor.from(x, [N, D]).handle, { trackFired: true });
  assert.ok(ra.indices, 'didFire downloads the indices');
  assert.equal(rb.indices, undefined, `trackFired returned indices ${tag}`);
  assert.equal(rb.fvu, ra.fvu, tag);
  const fired = new Tensor(await b.takeFired());
  assert.deepEqual(fired.shape, [M]);
  assert.deepEqual([...fired.toInt32Array()], [...didFire.toInt32Array()], tag);
  assert.ok(fired.toInt32Array().some((v) => v === 1));
  const again = new Tensor(await b.takeFired());
  assert.ok(again.toInt32Array().every((v) => v === 0), 'takeFired clears');
  for (const s of [a, b]) s.dispose();
});

test('batchVariance: a row range normalised by its share of the whole batch variance', opts, async () => {
  const N = 48, D = 32, M = 256, k = 4, r0 = 12, r1 = 36;
  const { a, b, x } = await twoStates(M, D, k);
  const xt = Tensor.from(x, [N, D]);
  const tv = await addon!.trainTotalVariance(xt.handle); // float64 on the host
  const ra = await a.forwardBackward(xt.handle, { rowBegin: r0, rowEnd: r1, totalVariance: (tv * (r1 - r0)) / N });
  const rb = await b.forwardBackward(xt.handle, { rowBegin: r0, rowEnd: r1, batchVariance: true });
  assert.ok(Math.abs(rb.totalVariance - ra.totalVariance) <= 1e-5 * ra.totalVariance, `tv ${rb.totalVariance} vs ${ra.totalVariance} ${tag}`);
  assert.ok(Math.abs(rb.fvu - ra.fvu) <= 1e-5 * ra.fvu, `fvu ${rb.fvu} vs ${ra.fvu} ${tag}`);
  for (const s of [a, b]) s.dispose();
});
