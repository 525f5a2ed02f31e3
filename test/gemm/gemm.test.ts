// The fast CPU GEMM against the plain double-accumulating reference loop: many shapes (edge
// sizes around the 6x16 and 12x32 register tiles and the cache blocks), both B layouts, all B
// dtypes, bias and accumulate, with every kernel set this CPU runs (avx512, avx2, portable).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

import {
  Tensor,
  ShapeError,
  DTypeError,
  matmul,
  matmulReference,
  gemmKernelName,
  gemmForcePortable,
  gemmForceKernels,
  gemmAvailableKernels,
  gemmInfo,
  matmulPacked,
  mulberry32,
  ValueError,
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

// Around the 6x16 (AVX2, portable) and 12x32 (AVX-512) register tiles.
const EDGE = [1, 2, 5, 6, 7, 12, 13, 15, 16, 17, 31, 33, 63, 65];

type KernelSet = 'avx512' | 'avx2' | 'portable';
const KERNELS = gemmAvailableKernels() as KernelSet[];

after(() => {
  gemmForceKernels('auto');
});

for (const kernels of KERNELS) {
  test(`${kernels} kernels: edge sizes, both layouts, all B dtypes, bias and accumulate`, async () => {
    assert.equal(gemmForceKernels(kernels), kernels);
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
    gemmForceKernels('auto');
  });

  test(`${kernels} kernels: shapes that span several cache blocks and threads`, async () => {
    gemmForceKernels(kernels);
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
    gemmForceKernels('auto');
  });
}

// What /proc/cpuinfo says this CPU runs, best first.
function expectedKernels(): KernelSet[] {
  const flags = cpuFlags();
  const avx2 = process.arch === 'x64' && /\bavx2\b/.test(flags) && /\bfma\b/.test(flags) && /\bf16c\b/.test(flags);
  const avx512 = avx2 && /\bavx512f\b/.test(flags);
  return [...(avx512 ? ['avx512' as const] : []), ...(avx2 ? ['avx2' as const] : []), 'portable'];
}

test('the best kernel set the CPU runs is chosen; every one it runs is listed', () => {
  gemmForceKernels('auto');
  assert.deepEqual(KERNELS, expectedKernels());
  if (!process.env.SPARSIFY_GEMM) assert.equal(gemmKernelName(), KERNELS[0]);
  assert.equal(gemmForcePortable(true), 'portable');
  assert.equal(gemmForcePortable(false), gemmKernelName());
});

test('gemmInfo: register tile and cache blocking derived from the cache sizes', () => {
  for (const kernels of KERNELS) {
    gemmForceKernels(kernels);
    const g = gemmInfo();
    assert.equal(g.kernels, kernels);
    assert.deepEqual([g.mr, g.nr], kernels === 'avx512' ? [12, 32] : [6, 16]);
    assert.ok(['sysfs', 'cpuid', 'default'].includes(g.cacheSource), g.cacheSource);
    assert.ok(g.l1d > 0 && g.l2 > 0, JSON.stringify(g));
    assert.ok(g.kc > 0 && g.kc % 8 === 0 && g.kc <= 768, JSON.stringify(g));
    assert.ok(g.mc >= g.mr && g.mc % g.mr === 0, JSON.stringify(g));
    assert.ok(g.nc >= g.nr && g.nc % g.nr === 0, JSON.stringify(g));
    // The packed A block fits in L2.
    assert.ok(g.mc * g.kc * 4 <= g.l2 || g.mc === g.mr, JSON.stringify(g));
  }
  gemmForceKernels('auto');
});

test('gemmForceKernels refuses a kernel set this CPU cannot run, and unknown names', () => {
  for (const name of ['avx512', 'avx2'] as const)
    if (!KERNELS.includes(name)) assert.throws(() => gemmForceKernels(name), (e: Error) => e instanceof ValueError && /lacks|no /.test(e.message));
  // @ts-expect-error: not a kernel set
  assert.throws(() => gemmForceKernels('sse9'), (e: Error) => e instanceof ValueError && /unknown kernel set/.test(e.message));
  assert.equal(gemmKernelName(), gemmForceKernels('auto'));
});

// A child process with SPARSIFY_GEMM set: the name it reports, or its error.
function childWithEnv(value: string): { kernels?: string; name?: string; message?: string } {
  const code = `import { gemmKernelName, matmul, Tensor } from '@sparsify/core';
    try {
      const c = await matmul(Tensor.from(new Float32Array(64 * 64).fill(1), [64, 64]), Tensor.from(new Float32Array(64 * 64).fill(1), [64, 64]));
      if (c.toFloat32Array()[0] !== 64) throw new Error('wrong product');
      console.log(JSON.stringify({ kernels: gemmKernelName() }));
    } catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message })); }`;
  const r = spawnSync(process.execPath, ['--conditions=sparsify-source', '--import', 'tsx', '--input-type=module', '-e', code], {
    env: { ...process.env, SPARSIFY_GEMM: value },
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `child failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

test('SPARSIFY_GEMM forces a kernel set, or names the one the CPU lacks', () => {
  for (const name of ['avx512', 'avx2', 'portable'] as const) {
    const out = childWithEnv(name);
    if (KERNELS.includes(name)) assert.deepEqual(out, { kernels: name });
    else {
      assert.equal(out.name, 'ValueError', JSON.stringify(out));
      assert.match(out.message!, new RegExp(`SPARSIFY_GEMM=${name}: .*(lacks|no )`));
    }
  }
  assert.deepEqual(childWithEnv('auto'), { kernels: KERNELS[0] });
  const bad = childWithEnv('fastest');
  assert.equal(bad.name, 'ValueError');
  assert.match(bad.message!, /SPARSIFY_GEMM=fastest: unknown kernel set/);
});

function cpuFlags(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

test('prepacked B: column ranges, all dtypes, both layouts, bias and accumulate', async () => {
  // [M, N, K, n0, n1]: K = 900 spans two packed K blocks; ranges start on 16-column panels
  // (also inside a 32-column AVX-512 tile: n0 = 16, 48).
  const cases: [number, number, number, number, number][] = [
    [40, 100, 70, 48, 100],
    [13, 32, 20, 16, 32],
    [37, 200, 900, 32, 181],
    [6, 50, 17, 16, 50],
    [2, 64, 33, 0, 64],
    [70, 40, 8, 0, 5],
    [3, 20, 0, 16, 20], // K = 0: bias (+ c) only
  ];
  let seed = 5000;
  for (const kernels of KERNELS) {
    gemmForceKernels(kernels);
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
  gemmForceKernels('auto');
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
