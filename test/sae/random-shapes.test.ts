// Kernels vs the float64 reference over odd shapes (d_in not a multiple of the SIMD width,
// latent counts that do not fill a tile, k = M, 4k = M, few dead latents, single rows), once per
// CPU kernel set this machine runs (GEMM, TopK scan and sparse decode variants).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { gemmAvailableKernels, gemmForceKernels, Rng, sparseCoderConfig, SparseCoder, Tensor, writeCoderDir, testing, type SparseCoderConfig } from '@sparsify/core';

import { relErr, relErrToMax } from './helpers.js';

async function coderOf(D: number, cfg: Partial<SparseCoderConfig>, rng: Rng, dir: string): Promise<SparseCoder> {
  const full = sparseCoderConfig(cfg);
  const M = full.numLatents;
  const rand = (n: number, s: number) => Float32Array.from({ length: n }, () => s * rng.normal());
  const t = new Map<string, Tensor>([
    ['encoder.weight', Tensor.from(rand(M * D, 1 / Math.sqrt(D)), [M, D])],
    ['encoder.bias', Tensor.from(rand(M, 0.1), [M])],
    ['W_dec', Tensor.from(rand(M * D, 0.3), [M, D])],
    ['b_dec', Tensor.from(rand(D, 0.2), [D])],
  ]);
  if (full.skipConnection) t.set('W_skip', Tensor.from(rand(D * D, 0.1), [D, D]));
  writeCoderDir(dir, full, D, t);
  for (const v of t.values()) v.dispose();
  return SparseCoder.loadFromDisk(dir);
}

const SHAPES: [number, Partial<SparseCoderConfig>, number, number][] = [
  // D, cfg, N, number of dead latents
  [7, { numLatents: 13, k: 13 }, 5, 2],
  [9, { numLatents: 20, k: 5, multiTopk: true }, 3, 20],
  [33, { numLatents: 600, k: 7 }, 17, 3],
  [5, { numLatents: 1030, k: 10, activation: 'groupmax' }, 4, 500],
  [3, { numLatents: 24, k: 6, transcode: true, skipConnection: true }, 1 + 1, 1],
  [40, { numLatents: 96, k: 24, multiTopk: true, activation: 'groupmax' }, 9, 40],
  [17, { numLatents: 513, k: 1 }, 33, 513],
  [64, { numLatents: 2560, k: 32, multiTopk: true }, 200, 700], // several latent tiles and row blocks
];

after(() => {
  gemmForceKernels('auto');
});

async function checkOddShapes(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sae-shapes-'));
  const rng = new Rng(2024);
  try {
    let i = 0;
    for (const [D, cfg, N, nDead] of SHAPES) {
      const c = await coderOf(D, { normalizeDecoder: false, ...cfg }, rng, join(dir, String(i++)));
      const M = c.numLatents;
      const x = Tensor.from(Float32Array.from({ length: N * D }, () => rng.normal()), [N, D]);
      const y = c.cfg.transcode ? Tensor.from(Float32Array.from({ length: N * D }, () => rng.normal()), [N, D]) : undefined;
      const dead = new Uint8Array(M);
      for (let j = 0; j < nDead; j++) dead[(j * 7919) % M] = 1;
      const spec = { k: c.cfg.k, groupmax: c.cfg.activation === 'groupmax', transcode: c.cfg.transcode, multiTopk: c.cfg.multiTopk };
      const what = `D=${D} ${JSON.stringify(cfg)} N=${N}`;
      const ref = testing.saeReference(c.weights(), undefined, x, y, spec, { deadMask: dead, auxkAlpha: 0.3, grads: true });
      // encode: same selections (reference ties -> lower index, like the kernel)
      const e = await c.encode(x, { returnPreActs: true });
      assert.ok(relErrToMax(e.preActs!.toFloat32Array(), ref.preActs) < 1e-5, `${what} pre_acts`);
      const ours = e.topIndices.toInt32Array();
      for (let n = 0; n < N; n++) {
        const a = [...ours.slice(n * spec.k, (n + 1) * spec.k)].sort((p, q) => p - q);
        const b = [...ref.indices.slice(n * spec.k, (n + 1) * spec.k)].sort((p, q) => p - q);
        assert.deepEqual(a, b, `${what} row ${n}`);
      }
      const r = await c.forwardBackward(x, { y, deadMask: dead, auxkAlpha: 0.3 });
      assert.ok(relErr(r.loss, ref.loss) < 1e-5, `${what} loss ${r.loss} vs ${ref.loss}`);
      assert.ok(relErr(r.auxkLoss, ref.auxkLoss) < 1e-5 || (r.auxkLoss === 0 && ref.auxkLoss === 0), `${what} auxk`);
      for (const [name, g] of c.grads()) assert.ok(relErrToMax(g.toFloat32Array(), ref.grads![name]) < 2e-5, `${what} grad ${name}`);
      const f = await c.forward(x, { y, deadMask: dead });
      assert.ok(relErrToMax(f.saeOut.toFloat32Array(), ref.saeOut) < 1e-5, `${what} sae_out`);
      c.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const kernels of gemmAvailableKernels() as ('avx512' | 'avx2' | 'portable')[]) {
  test(`kernels match the float64 reference on odd shapes (${kernels} kernels)`, async () => {
    gemmForceKernels(kernels);
    await checkOddShapes();
  });
}

test('sparse decode: the AVX-512 and AVX2 variants agree bit for bit (same FMA chain per element)', async (t) => {
  const available = gemmAvailableKernels();
  if (!available.includes('avx512')) return t.skip('this CPU has no AVX-512');
  const rng = new Rng(7);
  const [N, D, M, k] = [37, 77, 300, 9]; // D not a multiple of 16: vector tails too
  const coder = await SparseCoder.create(D, { numLatents: M, k }, { seed: 3 });
  const acts = Tensor.from(Float32Array.from({ length: N * k }, () => Math.abs(rng.normal())), [N, k]);
  const idx = Tensor.from(Int32Array.from({ length: N * k }, () => Math.floor(rng.uniform() * M)), [N, k]);
  const out: Float32Array[] = [];
  for (const kernels of ['avx512', 'avx2'] as const) {
    gemmForceKernels(kernels);
    out.push((await coder.decode(acts, idx)).toFloat32Array());
  }
  gemmForceKernels('auto');
  assert.deepEqual(out[0], out[1]);
  coder.dispose();
});
