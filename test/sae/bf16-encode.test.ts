// The fused encoder in the bf16 compute mode against its reference: pre-activations
// relu(bf16(x - b_dec) · bf16(W_enc)^T + b_enc) from the double-accumulating bf16 reference,
// the selection made on them. On every bf16 GEMM path this CPU runs. The top-k set may differ
// from the reference's only at near-ties (the f32 accumulation order), so each selected latent
// must be within the rounding tolerance of the reference's k-th value; values match.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { gemmAvailableKernels, gemmForceKernels, Rng, sparseCoderConfig, SparseCoder, Tensor, testing, ValueError, writeCoderDir, type SparseCoderConfig } from '@sparsify/core';

const HAS_BF16 = (() => {
  try {
    return /\bavx512_bf16\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
})();
const PATHS: [string, boolean, string][] = [];
for (const k of gemmAvailableKernels()) {
  if (k === 'avx512' && HAS_BF16) PATHS.push([k, false, 'avx512_bf16']);
  PATHS.push([k, true, `widen-${k}`]);
}

const dirs: string[] = [];
after(() => {
  testing.gemmBf16ForceWiden(false);
  gemmForceKernels('auto');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// A coder with random values in every parameter (b_dec too, so the input subtraction matters).
async function coder(D: number, M: number, cfg: Partial<SparseCoderConfig>, seed: number): Promise<SparseCoder> {
  const rng = new Rng(seed);
  const rand = (n: number, s: number) => Float32Array.from({ length: n }, () => s * rng.normal());
  const full = sparseCoderConfig({ numLatents: M, ...cfg });
  const t = new Map<string, Tensor>([
    ['encoder.weight', Tensor.from(rand(M * D, 1 / Math.sqrt(D)), [M, D])],
    ['encoder.bias', Tensor.from(rand(M, 0.1), [M])],
    ['W_dec', Tensor.from(rand(M * D, 1 / Math.sqrt(D)), [M, D])],
    ['b_dec', Tensor.from(rand(D, 0.3), [D])],
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'spx-bf16-'));
  dirs.push(dir);
  writeCoderDir(dir, full, D, t);
  return SparseCoder.loadFromDisk(dir);
}

// The reference pre-activations [N,M] (relu) and the scale Σ|x'||W| + |b| of their rounding error.
async function referencePre(c: SparseCoder, x: Float32Array, N: number): Promise<{ pre: Float32Array; scale: Float32Array }> {
  const p = c.params();
  const D = c.dIn, M = c.numLatents;
  const bDec = p.get('b_dec')!.toFloat32Array();
  const xin = Float32Array.from(x, (v, i) => v - bDec[i % D]);
  const W = p.get('encoder.weight')!;
  const b = p.get('encoder.bias')!;
  const pre = (await testing.matmulBf16Reference(Tensor.from(xin, [N, D]), W, { bTrans: true, bias: b })).toFloat32Array().map((v) => Math.max(v, 0));
  const scale = (
    await testing.matmulBf16Reference(Tensor.from(xin.map(Math.abs), [N, D]), Tensor.from(W.toFloat32Array().map(Math.abs), [M, D]), {
      bTrans: true,
      bias: Tensor.from(b.toFloat32Array().map(Math.abs), [M]),
    })
  ).toFloat32Array();
  return { pre, scale };
}

function randX(N: number, D: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: N * D }, () => rng.normal());
}

for (const [kernels, widen, name] of PATHS) {
  test(`${name}: TopK encode in bf16 mode matches the bf16 reference (values; sets up to near-ties)`, async () => {
    gemmForceKernels(kernels as 'avx512');
    assert.equal(testing.gemmBf16ForceWiden(widen), name);
    // M = 2100: three latent tiles (the last partial); N = 300 rows: several row blocks.
    const D = 96, M = 2100, k = 16, N = 300;
    const c = await coder(D, M, { k }, 1);
    const x = randX(N, D, 2);
    const { pre, scale } = await referencePre(c, x, N);
    const enc = await c.encode(Tensor.from(x, [N, D]), { computeDtype: 'bf16' });
    const acts = enc.topActs.toFloat32Array(), idx = enc.topIndices.toInt32Array();
    let same = 0;
    for (let n = 0; n < N; n++) {
      const row = pre.subarray(n * M, (n + 1) * M);
      const sorted = [...row].sort((a, b) => b - a);
      const kth = sorted[k - 1];
      const refSet = new Set([...row.keys()].sort((a, b) => row[b] - row[a] || a - b).slice(0, k));
      for (let j = 0; j < k; j++) {
        const m = idx[n * k + j], tol = 1e-5 * scale[n * M + m] + 1e-30;
        assert.ok(Math.abs(acts[n * k + j] - row[m]) <= tol, `row ${n} slot ${j}: ${acts[n * k + j]} vs reference ${row[m]}`);
        assert.ok(row[m] >= kth - 2 * tol, `row ${n}: latent ${m} (${row[m]}) is not near the reference's top-${k} (k-th ${kth})`);
        if (j > 0) assert.ok(acts[n * k + j] <= acts[n * k + j - 1], `row ${n}: slots not sorted`);
        if (refSet.has(m)) same++;
      }
    }
    assert.ok(same / (N * k) >= 0.99, `top-k overlap with the reference ${same / (N * k)}`);
    c.dispose();
  });

  test(`${name}: GroupMax encode in bf16 mode picks each group's maximum of the bf16 reference`, async () => {
    gemmForceKernels(kernels as 'avx512');
    testing.gemmBf16ForceWiden(widen);
    const D = 64, M = 1024, k = 8, N = 70, G = M / k;
    const c = await coder(D, M, { k, activation: 'groupmax' }, 3);
    const x = randX(N, D, 4);
    const { pre, scale } = await referencePre(c, x, N);
    const enc = await c.encode(Tensor.from(x, [N, D]), { computeDtype: 'bf16' });
    const acts = enc.topActs.toFloat32Array(), idx = enc.topIndices.toInt32Array();
    for (let n = 0; n < N; n++)
      for (let g = 0; g < k; g++) {
        const m = idx[n * k + g];
        assert.ok(m >= g * G && m < (g + 1) * G, `row ${n} group ${g}: index ${m}`);
        let best = 0;
        for (let q = g * G; q < (g + 1) * G; q++) best = Math.max(best, pre[n * M + q]);
        const tol = 1e-5 * scale[n * M + m] + 1e-30;
        assert.ok(Math.abs(acts[n * k + g] - pre[n * M + m]) <= tol, `row ${n} group ${g}: value`);
        assert.ok(pre[n * M + m] >= best - 2 * tol, `row ${n} group ${g}: ${pre[n * M + m]} vs group max ${best}`);
      }
    c.dispose();
  });
}

test('f32 is the default; bf16 only when asked (property or per call), and it changes the numbers', async () => {
  gemmForceKernels('auto');
  testing.gemmBf16ForceWiden(false);
  const D = 64, M = 512, k = 8, N = 40;
  const c = await coder(D, M, { k }, 5);
  assert.equal(c.computeDtype, 'f32');
  const X = Tensor.from(randX(N, D, 6), [N, D]);
  const def = (await c.encode(X, { returnPreActs: true })).preActs!.toFloat32Array();
  const f32 = (await c.encode(X, { returnPreActs: true, computeDtype: 'f32' })).preActs!.toFloat32Array();
  const b16 = (await c.encode(X, { returnPreActs: true, computeDtype: 'bf16' })).preActs!.toFloat32Array();
  assert.deepEqual(def, f32);
  let differ = 0;
  for (let i = 0; i < f32.length; i++) if (f32[i] !== b16[i]) differ++;
  assert.ok(differ > f32.length / 4, `bf16 pre-activations equal the f32 ones in ${f32.length - differ} of ${f32.length}`);
  c.computeDtype = 'bf16';
  assert.deepEqual((await c.encode(X, { returnPreActs: true })).preActs!.toFloat32Array(), b16);
  // @ts-expect-error: not a compute dtype
  assert.throws(() => (c.computeDtype = 'fp8'), (e: Error) => e instanceof ValueError && /computeDtype must be 'f32' or 'bf16'/.test(e.message));
  // @ts-expect-error: not a compute dtype
  await assert.rejects(c.encode(X, { computeDtype: 'half' }), ValueError);
  c.dispose();
});

test('training in bf16 mode (bf16 encoder forward, f32 backward) lowers the loss like f32', async () => {
  gemmForceKernels('auto');
  testing.gemmBf16ForceWiden(false);
  const { createOptimizer } = await import('@sparsify/core');
  const D = 32, N = 256;
  // Activations made of 3 of 48 random directions each: a dictionary a TopK coder can learn.
  const rng = new Rng(11);
  const dirsV = Float32Array.from({ length: 48 * D }, () => rng.normal() / Math.sqrt(D));
  const x = new Float32Array(N * D);
  for (let n = 0; n < N; n++)
    for (let j = 0; j < 3; j++) {
      const f = Math.floor(rng.uniform() * 48), a = 1 + rng.uniform();
      for (let d = 0; d < D; d++) x[n * D + d] += a * dirsV[f * D + d];
    }
  const X = Tensor.from(x, [N, D]);
  const run = async (dtype: 'f32' | 'bf16') => {
    const c = await SparseCoder.create(D, { numLatents: 128, k: 4 }, { seed: 3 });
    c.computeDtype = dtype;
    const opt = createOptimizer('adam', [c], { lr: 1e-2 });
    const dead = new Uint8Array(128);
    for (let m = 0; m < 128; m += 2) dead[m] = 1; // exercise the AuxK route in bf16 mode too
    const fvu: number[] = [];
    for (let s = 0; s < 60; s++) {
      const r = await c.forwardBackward(X, { auxkAlpha: 1 / 32, deadMask: dead });
      fvu.push(r.fvu);
      await opt.step();
    }
    c.dispose();
    return fvu;
  };
  const f32 = await run('f32'), b16 = await run('bf16');
  assert.ok(b16[59] < 0.5 * b16[0], `bf16 FVU ${b16[0]} -> ${b16[59]}`);
  assert.ok(Math.abs(b16[59] - f32[59]) <= 0.1 * f32[59] + 0.01, `final FVU bf16 ${b16[59]} vs f32 ${f32[59]}`);
});
