// The bf16-operand GEMM of the bf16 compute mode against its reference (operands rounded to
// bf16, products and sum in double), on every path this CPU runs: avx512_bf16 (vdpbf16ps) and
// the widening path on each f32 kernel set. The reference itself is checked against a plain
// JS rounding + double loop.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

import { Tensor, ShapeError, ValueError, matmulBf16, gemmBf16Path, gemmForceKernels, gemmAvailableKernels, mulberry32, testing } from '@sparsify/core';

type BDType = 'float32' | 'bfloat16' | 'float16';

function rand(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

// bf16 round to nearest even of an f32 value, subnormals to signed zero (the kernels' rounding).
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function bf16(x: number): number {
  f32[0] = x;
  let u = u32[0];
  if ((u & 0x7f800000) === 0) u = u & 0x80000000;
  else u = ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0;
  u32[0] = u;
  return f32[0];
}

function cpuFlags(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '';
  } catch {
    return '';
  }
}
const HAS_BF16 = /\bavx512_bf16\b/.test(cpuFlags());
const KERNELS = gemmAvailableKernels() as ('avx512' | 'avx2' | 'portable')[];

// The paths this machine runs: [kernel set, force widening, expected path name].
const PATHS: [('avx512' | 'avx2' | 'portable'), boolean, string][] = [];
for (const k of KERNELS) {
  if (k === 'avx512' && HAS_BF16) PATHS.push([k, false, 'avx512_bf16']);
  PATHS.push([k, true, `widen-${k}`]);
}

function usePath(kernels: string, widen: boolean): string {
  gemmForceKernels(kernels as 'avx512');
  return testing.gemmBf16ForceWiden(widen);
}

after(() => {
  testing.gemmBf16ForceWiden(false);
  gemmForceKernels('auto');
});

interface Case {
  M: number;
  N: number;
  K: number;
  dtype: BDType;
  bTrans: boolean;
  bias: boolean;
  n0?: number;
  n1?: number;
}

// f32 accumulation of exact bf16 products: error <= ~K·2^-24·Σ|a_k b_k|; 1e-5·Σ|a_k b_k| is that
// bound with margin for K up to a few hundred and the order of the sum (tiles, K blocks).
async function check(c: Case, seed: number): Promise<void> {
  const { M, N, K, dtype, bTrans } = c;
  const a = rand(M * K, seed);
  const b = rand(N * K, seed + 1);
  const n0 = c.n0 ?? 0, n1 = c.n1 ?? N;
  const bias = c.bias ? rand(n1 - n0, seed + 2) : undefined;
  const bShape = bTrans ? [N, K] : [K, N];
  const A = Tensor.from(a, [M, K]);
  const B = Tensor.from(b, bShape, { dtype });
  const got = (await matmulBf16(A, B, { bTrans, bias: bias && Tensor.from(bias, [n1 - n0]), n0, n1 })).toFloat32Array();
  const fullBias = bias && Tensor.from(Float32Array.from({ length: N }, (_, j) => (j >= n0 && j < n1 ? bias[j - n0] : 0)), [N]);
  const ref = (await testing.matmulBf16Reference(A, B, { bTrans, bias: fullBias })).toFloat32Array();
  const absB = Tensor.from(B.toFloat32Array().map(Math.abs), bShape, { dtype });
  const scale = (await testing.matmulBf16Reference(Tensor.from(a.map(Math.abs), [M, K]), absB, { bTrans })).toFloat32Array();
  const W = n1 - n0;
  assert.equal(got.length, M * W);
  for (let m = 0; m < M; m++)
    for (let j = 0; j < W; j++) {
      const g = got[m * W + j], r = ref[m * N + n0 + j], s = scale[m * N + n0 + j] + (bias ? Math.abs(bias[j]) : 0);
      if (!(Math.abs(g - r) <= 1e-5 * s + 1e-30))
        assert.fail(`${JSON.stringify(c)}: C[${m},${j}] = ${g}, reference ${r} (err ${Math.abs(g - r)}, scale ${s})`);
    }
}

test('the reference rounds both operands to bf16 (nearest even, subnormals to zero) and sums in double', async () => {
  const M = 3, N = 5, K = 37;
  const a = rand(M * K, 7).map((v, i) => (i % 11 === 0 ? v * 1e-39 : v)); // some subnormal inputs
  const b = rand(N * K, 8);
  // Exact ties: 1 + 2^-8 rounds to 1 (even), 1 + 3·2^-8 to 1 + 2^-6... checked through bf16().
  a[1] = 1 + 2 ** -8;
  a[2] = 1 + 3 * 2 ** -8;
  assert.equal(bf16(a[1]), 1);
  assert.equal(bf16(a[2]), 1 + 2 ** -6);
  const ref = (await testing.matmulBf16Reference(Tensor.from(a, [M, K]), Tensor.from(b, [N, K]), { bTrans: true })).toFloat32Array();
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += bf16(a[m * K + k]) * bf16(b[n * K + k]);
      assert.equal(ref[m * N + n], Math.fround(s), `C[${m},${n}]`);
    }
});

// Values whose rounding matters: ties (to even, both ways), subnormals, the largest finite values.
function specialValues(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const pick = [1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 2 ** -130, -(2 ** -127), 1e-40, 3.3895313892515355e38, 1.5, -0.0, 0];
  return Float32Array.from({ length: n }, (_, i) => (i % 3 === 0 ? pick[i % pick.length] : (2 * r() - 1) * 2 ** Math.floor(20 * r() - 10)));
}

for (const [kernels, widen, name] of PATHS) {
  test(`${name}: B is rounded exactly like the reference (ties to even, subnormals to zero)`, async () => {
    usePath(kernels, widen);
    const N = 70, K = 300;
    const b = specialValues(N * K, 3);
    for (const bTrans of [true, false]) {
      // A = e_k rows (one-hot): C[k, n] = bf16(B[n, k]) exactly, whatever the accumulation order.
      const M = K, a = new Float32Array(M * K);
      for (let k = 0; k < K; k++) a[k * K + k] = 1;
      const B = bTrans ? Tensor.from(b, [N, K]) : Tensor.from(Float32Array.from({ length: K * N }, (_, i) => b[(i % N) * K + Math.floor(i / N)]), [K, N]);
      const got = (await matmulBf16(Tensor.from(a, [M, K]), B, { bTrans })).toFloat32Array();
      for (let k = 0; k < K; k++)
        for (let n = 0; n < N; n++) {
          const want = bf16(b[n * K + k]);
          if (!Object.is(got[k * N + n], want) && !(want === 0 && got[k * N + n] === 0))
            assert.fail(`bTrans ${bTrans}: B[${n},${k}] = ${b[n * K + k]} -> ${got[k * N + n]}, expected ${want}`);
        }
    }
    testing.gemmBf16ForceWiden(false);
    gemmForceKernels('auto');
  });
}

const EDGE = [1, 5, 12, 13, 16, 31, 33, 65];

for (const [kernels, widen, name] of PATHS) {
  test(`${name}: edge sizes, both layouts, all B dtypes, bias, column ranges`, async () => {
    assert.equal(usePath(kernels, widen), name);
    assert.equal(gemmBf16Path(), name);
    let seed = 1, i = 0;
    const Ks = [1, 2, 7, 64, 301];
    const dtypes: BDType[] = ['float32', 'bfloat16', 'float16'];
    for (const M of EDGE)
      for (const N of EDGE) {
        await check({ M, N, K: Ks[i % Ks.length], dtype: dtypes[i % 3], bTrans: i % 2 === 0, bias: i % 4 < 2 }, seed++);
        i++;
      }
    // Several K blocks (K > KC = 768), rows past MC, threads' chunks; prepacked column ranges
    // that start inside a 32-column tile.
    for (const [M, N, K] of [[300, 530, 65], [20, 100, 1700], [64, 1031, 129]] as const)
      for (const bTrans of [true, false]) await check({ M, N, K, dtype: 'float32', bTrans, bias: true }, seed++);
    for (const [n0, n1] of [[16, 100], [48, 530], [512, 530], [32, 32]] as const)
      await check({ M: 37, N: 530, K: 96, dtype: 'float32', bTrans: true, bias: true, n0, n1 }, seed++);
    testing.gemmBf16ForceWiden(false);
    gemmForceKernels('auto');
  });
}

test('the path follows the CPU and the kernel set: avx512_bf16 only with AVX512_BF16 and the avx512 set', () => {
  gemmForceKernels('auto');
  testing.gemmBf16ForceWiden(false);
  const best = KERNELS[0];
  if (!process.env.SPARSIFY_GEMM) assert.equal(gemmBf16Path(), best === 'avx512' && HAS_BF16 ? 'avx512_bf16' : `widen-${best}`);
  for (const k of KERNELS) {
    gemmForceKernels(k);
    assert.equal(gemmBf16Path(), k === 'avx512' && HAS_BF16 ? 'avx512_bf16' : `widen-${k}`);
  }
  gemmForceKernels('auto');
});

test('SPARSIFY_GEMM pins the bf16 path too', () => {
  const code = `import { gemmBf16Path } from '@sparsify/core'; console.log(JSON.stringify(gemmBf16Path()));`;
  for (const k of KERNELS.filter((x) => x !== 'avx512')) {
    const r = spawnSync(process.execPath, ['--conditions=sparsify-source', '--import', 'tsx', '--input-type=module', '-e', code], {
      env: { ...process.env, SPARSIFY_GEMM: k },
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout.trim().split('\n').pop()!), `widen-${k}`);
  }
});

test('typed errors: shapes, column ranges', async () => {
  const a = Tensor.zeros([4, 8]);
  await assert.rejects(matmulBf16(a, Tensor.zeros([16, 7]), { bTrans: true }), ShapeError);
  await assert.rejects(matmulBf16(a, Tensor.zeros([16, 8]), { bTrans: true, n0: 8 }), (e: Error) => e instanceof ValueError && /multiple of 16/.test(e.message));
  await assert.rejects(matmulBf16(a, Tensor.zeros([16, 8]), { bTrans: true, n1: 17 }), ShapeError);
  await assert.rejects(matmulBf16(a, Tensor.zeros([16, 8]), { bTrans: true, bias: Tensor.zeros([3]) }), ShapeError);
});
