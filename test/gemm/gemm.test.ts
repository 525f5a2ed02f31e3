// The fast CPU GEMM against the plain double-accumulating reference loop: many shapes (edge
// sizes around the 6x16 register tile and the cache blocks), both B layouts, all B dtypes, bias
// and accumulate, with both the AVX2 and the portable kernel sets.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  Tensor,
  ShapeError,
  DTypeError,
  matmul,
  matmulReference,
  gemmKernelName,
  gemmForcePortable,
  matmulPacked,
  mulberry32,
} from '@sparsify/core';

type BDType = 'float32' | 'bfloat16' | 'float16';
const BDTYPES: BDType[] = ['float32', 'bfloat16', 'float16'];

// Deterministic uniform(-1, 1) data (mulberry32).
function rand(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

const abs = (x: Float32Array) => x.map(Math.abs);

interface Case {
  M: number;
  N: number;
  K: number;
  dtype: BDType;
  bTrans: boolean;
  bias: boolean;
  acc: boolean;
}

// Checks matmul against matmulReference with a tolerance scaled by sum_k |a_k b_k| (+|bias|+|c|),
// i.e. the size of the f32 rounding error, not of the result (which may cancel to ~0).
async function check(c: Case, seed: number): Promise<void> {
  const { M, N, K, dtype, bTrans } = c;
  const a = rand(M * K, seed);
  const b = rand(N * K, seed + 1);
  const bias = c.bias ? rand(N, seed + 2) : undefined;
  const c0 = c.acc ? rand(M * N, seed + 3) : undefined;
  const bShape = bTrans ? [N, K] : [K, N];
  const A = Tensor.from(a, [M, K]);
  const B = Tensor.from(b, bShape, { dtype });
  const Bias = bias && Tensor.from(bias, [N]);
  const C0 = c0 && Tensor.from(c0, [M, N]);
  const got = (await matmul(A, B, { bTrans, bias: Bias, c: C0 })).toFloat32Array();
  const ref = (await matmulReference(A, B, { bTrans, bias: Bias, c: C0 })).toFloat32Array();
  // |A|·|B| (+|bias|+|c|) through the reference: the scale of the rounding error.
  const Babs = Tensor.from(abs(B.toFloat32Array()), bShape);
  const scale = (
    await matmulReference(Tensor.from(abs(a), [M, K]), Babs, {
      bTrans,
      bias: bias && Tensor.from(abs(bias), [N]),
      c: c0 && Tensor.from(abs(c0), [M, N]),
    })
  ).toFloat32Array();
  assert.equal(got.length, M * N);
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - ref[i]);
    if (!(err <= 1e-5 * scale[i] + 1e-30)) {
      assert.fail(
        `${JSON.stringify(c)}: C[${Math.floor(i / N)},${i % N}] = ${got[i]}, reference ${ref[i]} (err ${err}, scale ${scale[i]})`,
      );
    }
  }
}

const EDGE = [1, 2, 5, 6, 7, 15, 16, 17, 63, 65];

after(() => {
  gemmForcePortable(false);
});

for (const kernels of ['auto', 'portable'] as const) {
  test(`${kernels} kernels: edge sizes, both layouts, all B dtypes, bias and accumulate`, async () => {
    assert.match(gemmForcePortable(kernels === 'portable'), kernels === 'portable' ? /^portable$/ : /^(avx2|portable)$/);
    let seed = 1;
    // M and N sweep the edge sizes (tiny-M / tiny-N paths, partial register tiles); K covers
    // 1, non-multiples of 8 and more than one K block.
    const Ks = [1, 7, 17, 64, 300];
    let i = 0;
    for (const M of EDGE)
      for (const N of EDGE) {
        const K = Ks[i % Ks.length];
        const dtype = BDTYPES[i % 3];
        const bTrans = i % 2 === 0;
        await check({ M, N, K, dtype, bTrans, bias: i % 4 < 2, acc: i % 5 < 2 }, seed++);
        i++;
      }
    gemmForcePortable(false);
  });

  test(`${kernels} kernels: shapes that span several cache blocks and threads`, async () => {
    gemmForcePortable(kernels === 'portable');
    const shapes: [number, number, number][] = [
      [257, 97, 65], // M > MC, partial tiles on both edges
      [30, 530, 600], // several K blocks (KC = 256), N > one thread chunk
      [64, 1031, 129],
      [20, 100, 1700], // K > KC (768): three K blocks, C accumulated across them
      [3, 1000, 513], // small-M path, K tail
      [200, 3, 257], // small-N path
    ];
    let seed = 1000;
    for (const [M, N, K] of shapes)
      for (const dtype of BDTYPES)
        for (const bTrans of [true, false])
          await check({ M, N, K, dtype, bTrans, bias: seed % 2 === 0, acc: seed % 3 === 0 }, seed++);
    gemmForcePortable(false);
  });
}

test('the AVX2 kernels are chosen on an AVX2 machine', () => {
  gemmForcePortable(false);
  const flags = cpuFlags();
  const avx2 = process.arch === 'x64' && /\bavx2\b/.test(flags) && /\bfma\b/.test(flags) && /\bf16c\b/.test(flags);
  assert.equal(gemmKernelName(), avx2 ? 'avx2' : 'portable');
});

function cpuFlags(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

test('prepacked B: column ranges, all dtypes, both layouts, bias and accumulate', async () => {
  // [M, N, K, n0, n1]: K = 900 spans two packed K blocks; ranges start on 16-column panels.
  const cases: [number, number, number, number, number][] = [
    [37, 200, 900, 32, 181],
    [6, 50, 17, 16, 50],
    [2, 64, 33, 0, 64],
    [70, 40, 8, 0, 5],
    [3, 20, 0, 16, 20], // K = 0: bias (+ c) only
  ];
  let seed = 5000;
  for (const kernels of [false, true]) {
    gemmForcePortable(kernels);
    for (const [M, N, K, n0, n1] of cases)
      for (const dtype of BDTYPES)
        for (const bTrans of [true, false]) {
          seed++;
          const w = n1 - n0;
          const a = rand(M * K, seed);
          const A = Tensor.from(a, [M, K]);
          const B = Tensor.from(rand(N * K, seed + 1), bTrans ? [N, K] : [K, N], { dtype });
          const biasFull = rand(N, seed + 2);
          const useBias = seed % 2 === 0;
          const c0 = seed % 3 === 0 ? rand(M * w, seed + 3) : undefined;
          const got = (
            await matmulPacked(A, B, {
              bTrans,
              n0,
              n1,
              bias: useBias ? Tensor.from(biasFull.slice(n0, n1), [w]) : undefined,
              c: c0 && Tensor.from(c0, [M, w]),
            })
          ).toFloat32Array();
          const ref = (
            await matmulReference(A, B, { bTrans, bias: useBias ? Tensor.from(biasFull, [N]) : undefined })
          ).toFloat32Array();
          const scale = (
            await matmulReference(Tensor.from(abs(a), [M, K]), Tensor.from(abs(B.toFloat32Array()), B.shape), { bTrans })
          ).toFloat32Array();
          assert.equal(got.length, M * w);
          for (let m = 0; m < M; m++)
            for (let j = 0; j < w; j++) {
              const want = ref[m * N + n0 + j] + (c0 ? c0[m * w + j] : 0);
              const tol = 1e-5 * (scale[m * N + n0 + j] + 1 + (c0 ? Math.abs(c0[m * w + j]) : 0));
              if (!(Math.abs(got[m * w + j] - want) <= tol))
                assert.fail(`${JSON.stringify({ M, N, K, n0, n1, dtype, bTrans, kernels })}: [${m},${j}] ${got[m * w + j]} vs ${want}`);
            }
        }
  }
  gemmForcePortable(false);
  const A = Tensor.from(rand(8, 1), [2, 4]);
  const B = Tensor.from(rand(128, 2), [32, 4]);
  await assert.rejects(matmulPacked(A, B, { bTrans: true, n0: 8 }), /multiple of 16/);
  await assert.rejects(matmulPacked(A, B, { bTrans: true, n0: 16, n1: 40 }), ShapeError);
});

test('empty shapes: K = 0 gives bias (+ c), M = 0 gives an empty result', async () => {
  const bias = Tensor.from(new Float32Array([1, 2, 3]), [3]);
  const c = Tensor.from(new Float32Array([10, 20, 30, 40, 50, 60]), [2, 3]);
  const A = Tensor.from(new Float32Array(0), [2, 0]);
  const B = Tensor.from(new Float32Array(0), [3, 0]);
  assert.deepEqual([...(await matmul(A, B, { bTrans: true, bias })).toFloat32Array()], [1, 2, 3, 1, 2, 3]);
  assert.deepEqual([...(await matmul(A, B, { bTrans: true, bias, c })).toFloat32Array()], [11, 22, 33, 41, 52, 63]);
  assert.deepEqual([...(await matmul(A, B, { bTrans: true })).toFloat32Array()], [0, 0, 0, 0, 0, 0]);
  const E = await matmul(Tensor.from(new Float32Array(0), [0, 4]), Tensor.from(new Float32Array(12), [3, 4]), {
    bTrans: true,
  });
  assert.deepEqual(E.shape, [0, 3]);
});

test('accumulate does not modify the input c', async () => {
  const A = Tensor.from(rand(12, 3), [3, 4]);
  const B = Tensor.from(rand(20, 4), [4, 5]);
  const cData = rand(15, 5);
  const c = Tensor.from(cData, [3, 5]);
  await matmul(A, B, { c });
  assert.deepEqual(c.toFloat32Array(), cData);
});

test('bad arguments give typed errors naming the argument', async () => {
  const A = Tensor.from(rand(12, 1), [3, 4]);
  const B = Tensor.from(rand(20, 2), [5, 4]);
  await assert.rejects(matmul(A, B, { bTrans: false }), ShapeError);
  await assert.rejects(matmul(A, B, { bTrans: true, bias: Tensor.from(rand(4, 3), [4]) }), /bias/);
  await assert.rejects(matmul(A, B, { bTrans: true, c: Tensor.from(rand(15, 3), [5, 3]) }), (e: Error) => {
    return e instanceof ShapeError && /\bc\b/.test(e.message);
  });
  await assert.rejects(matmul(A, Tensor.from(new Int32Array(20), [5, 4]), { bTrans: true }), DTypeError);
  await assert.rejects(matmul(Tensor.from(rand(12, 1), [3, 4], { dtype: 'bfloat16' }), B, { bTrans: true }), /\ba\b/);
  await assert.rejects(
    matmul(A, B, { bTrans: true, bias: Tensor.from(rand(5, 3), [5], { dtype: 'float16' }) }),
    DTypeError,
  );
});
