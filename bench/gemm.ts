/**
 * GEMM throughput: our CPU matmul (float32 and bfloat16 B) against PyTorch's CPU matmul (MKL /
 * oneDNN) measured in the same run, shape by shape, interleaved, at the same thread count.
 *
 *   node --conditions=sparsify-source --import tsx bench/gemm.ts
 *   env SPARSIFY_BENCH_THREADS (default 2), SPARSIFY_BENCH_REPS (default 5),
 *       SPARSIFY_BENCH_PYTHON (a python with torch or numpy; default: python3 if it has either)
 *
 * Prints a markdown section and writes bench/out/gemm.{md,json}.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { Tensor, matmul, numThreads, setNumThreads, gemmAvailableKernels, gemmForceKernels, gemmInfo, gemmKernelName, gemmSummary } from '@sparsify/core';

import { benchThreads, loadLine, median, sectionHeaderLines, smokeMode } from './lib/machine.js';

const here = dirname(fileURLToPath(import.meta.url));

interface Shape {
  name: string;
  M: number;
  K: number;
  N: number;
  /** B stored [N,K] (nn.Linear) when true, [K,N] (GPT-2 Conv1D) when false. */
  bTrans: boolean;
}

const FULL_SHAPES: Shape[] = [
  { name: 'SAE encoder x[4096,768] @ W_enc[24576,768]^T', M: 4096, K: 768, N: 24576, bTrans: true },
  { name: 'x[512,8192] @ W[768,8192]^T', M: 512, K: 8192, N: 768, bTrans: true },
  { name: '1024^3, W [N,K]', M: 1024, K: 1024, N: 1024, bTrans: true },
  { name: 'GPT-2 MLP c_proj x[2048,3072] @ W[3072,768] (Conv1D)', M: 2048, K: 3072, N: 768, bTrans: false },
];
// --smoke: one small shape, one run (checks the harness, not the speed).
const SHAPES: Shape[] = smokeMode() ? [{ name: 'smoke 64x128x96', M: 64, K: 128, N: 96, bTrans: true }] : FULL_SHAPES;

// A full GC between phases, so V8's background GC threads do not compete with the timed native
// threads for the (few) cores right after the large input arrays are dropped.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
const settle = async () => {
  collectGarbage();
  await new Promise((r) => setTimeout(r, 200));
};

const threads = benchThreads();
const reps = smokeMode() ? 1 : Math.max(1, Number(process.env.SPARSIFY_BENCH_REPS ?? '5') | 0);
const warmup = 1;

function randomData(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

// ---- reference (Python) ----
function findPython(): { python?: string; why: string } {
  const forced = process.env.SPARSIFY_BENCH_PYTHON;
  if (forced === 'none') return { why: 'no Python reference requested (SPARSIFY_BENCH_PYTHON=none)' };
  if (forced) return { python: forced, why: `SPARSIFY_BENCH_PYTHON=${forced}` };
  for (const mod of ['torch', 'numpy']) {
    const r = spawnSync('python3', ['-c', `import ${mod}`], { stdio: 'ignore' });
    if (r.status === 0) return { python: 'python3', why: `python3 has ${mod}` };
  }
  return { why: 'no python3 with torch or numpy (set SPARSIFY_BENCH_PYTHON)' };
}

/** bench/ref/torch_matmul.py as a server: one JSON request line in, one reply line out. */
class Reference {
  library = '';
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  private stderr = '';

  constructor(python: string) {
    this.child = spawn(python, [join(here, 'ref', 'torch_matmul.py'), JSON.stringify({ threads })], {
      env: { ...process.env, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) },
    });
    this.child.on('error', (e) => (this.stderr += `${e.message}\n`));
    this.child.stderr.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-2000)));
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  private async reply(): Promise<{ library: string; seconds?: number[] }> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`reference exited: ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    return JSON.parse(r.value);
  }

  async start(): Promise<void> {
    this.library = (await this.reply()).library;
  }

  async time(shape: Shape, reps: number, warmup = 0): Promise<number[]> {
    this.child.stdin.write(JSON.stringify({ M: shape.M, K: shape.K, N: shape.N, bTrans: shape.bTrans, warmup, reps }) + '\n');
    return (await this.reply()).seconds ?? [];
  }

  close(): void {
    this.child.stdin.end();
  }
}

// On an AVX-512 machine the AVX2 kernels run too, so Zen 3 (AVX2) figures stay reproducible from the same run.
const alsoAvx2 = gemmKernelName() !== 'avx2' && gemmAvailableKernels().includes('avx2');

async function timeAvx2(A: Tensor, B: Tensor, bTrans: boolean): Promise<number> {
  const chosen = gemmKernelName();
  gemmForceKernels('avx2');
  try {
    return await timeOnce(A, B, bTrans);
  } finally {
    gemmForceKernels(chosen as 'avx512' | 'avx2' | 'portable');
  }
}

async function timeOnce(A: Tensor, B: Tensor, bTrans: boolean): Promise<number> {
  const t0 = process.hrtime.bigint();
  const C = await matmul(A, B, { bTrans });
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  C.dispose();
  return dt;
}

// ---- run ----
const gflops = (s: Shape, sec: number) => (2 * s.M * s.N * s.K) / sec / 1e9;
const fmt = (x: number | undefined, d = 1) => (x === undefined ? '–' : x.toFixed(d));
const pct = (x: number | undefined) => (x === undefined ? '–' : `${(100 * x).toFixed(0)}%`);

async function main(): Promise<void> {
  if (numThreads() !== threads) {
    setNumThreads(threads);
    // Give the new pool threads time to park before the first job (see docs/gemm.md, known issue).
    await new Promise((r) => setTimeout(r, 300));
  }
  const { python, why } = findPython();
  const startLoad = loadLine();
  const rows: Record<string, unknown>[] = [];
  let ref: Reference | undefined;
  let refLibrary: string | undefined;
  let refNote = python ? '' : why;
  if (python) {
    try {
      ref = new Reference(python);
      await ref.start();
      refLibrary = ref.library;
    } catch (e) {
      refNote = `reference failed to start (${python}): ${(e as Error).message}`;
      ref = undefined;
    }
  }
  for (const [i, shape] of SHAPES.entries()) {
    process.stderr.write(`[gemm] ${shape.name} ...\n`);
    const bShape = shape.bTrans ? [shape.N, shape.K] : [shape.K, shape.N];
    const [A, Bf32, Bbf16] = (() => {
      const bData = randomData(shape.N * shape.K, 100 + i);
      return [
        Tensor.from(randomData(shape.M * shape.K, 1 + i), [shape.M, shape.K]),
        Tensor.from(bData, bShape),
        Tensor.from(bData, bShape, { dtype: 'bfloat16' }),
      ];
    })();
    await settle();
    // Warm-up, then single runs interleaved (ours f32, reference, ours bf16) so that all three
    // see the same machine load over the measurement.
    const f32: number[] = [];
    const bf16: number[] = [];
    const avx2: number[] = [];
    let refS: number[] | undefined = ref ? [] : undefined;
    for (let w = 0; w < warmup; w++) {
      await timeOnce(A, Bf32, shape.bTrans);
      await timeOnce(A, Bbf16, shape.bTrans);
      if (alsoAvx2) await timeAvx2(A, Bf32, shape.bTrans);
    }
    try {
      if (ref) await ref.time(shape, 0, warmup);
      await new Promise((r) => setTimeout(r, 250));
    } catch (e) {
      refNote = (e as Error).message;
      ref = refS = undefined;
    }
    for (let r = 0; r < reps; r++) {
      f32.push(await timeOnce(A, Bf32, shape.bTrans));
      if (ref && refS) {
        try {
          refS.push(...(await ref.time(shape, 1)));
          // Let the reference's OpenMP threads stop spin-waiting before our next run.
          await new Promise((r) => setTimeout(r, 250));
        } catch (e) {
          refNote = (e as Error).message;
          ref = refS = undefined;
        }
      }
      bf16.push(await timeOnce(A, Bbf16, shape.bTrans));
      if (alsoAvx2) avx2.push(await timeAvx2(A, Bf32, shape.bTrans));
    }
    A.dispose();
    Bf32.dispose();
    Bbf16.dispose();
    const ours32 = gflops(shape, median(f32));
    const ours16 = gflops(shape, median(bf16));
    const refG = refS?.length ? gflops(shape, median(refS)) : undefined;
    rows.push({
      ...shape,
      ours_f32_s: f32,
      ours_bf16_s: bf16,
      ref_s: refS,
      ours_f32_gflops: ours32,
      ours_bf16_gflops: ours16,
      ours_avx2_s: alsoAvx2 ? avx2 : undefined,
      ours_avx2_gflops: alsoAvx2 ? gflops(shape, median(avx2)) : undefined,
      ref_gflops: refG,
      ratio_f32: refG ? ours32 / refG : undefined,
      ratio_bf16: refG ? ours16 / refG : undefined,
      // Best-of ratio: the least disturbed run of each side (useful when the machine is shared).
      ratio_f32_best: refS?.length ? Math.min(...refS) / Math.min(...f32) : undefined,
    });
  }
  ref?.close();

  const lines: string[] = [];
  lines.push('## GEMM (dense CPU matmul)', '', ...sectionHeaderLines());
  const vs = refLibrary
    ? `vs ${refLibrary} CPU f32 (\`F.linear\` / \`matmul\`, ${threads} threads) measured in the same run, ` +
      `run by run (ours f32, reference, ours bf16${alsoAvx2 ? ', ours f32 with the AVX2 kernels' : ''}, repeated)`
    : '(reference not measured)';
  lines.push(
    `Our \`matmul\` (kernels: ${gemmSummary()}, ${threads} threads) ${vs}. ` +
      `GFLOP/s = 2·M·N·K / median time of ${reps} runs after ${warmup} warm-up` +
      (refLibrary ? '; the last column compares the fastest run of each side. ' : '. ') +
      `Load average at start: ${startLoad}.`,
  );
  if (refNote) lines.push('', `Reference: ${refNote}.`);
  lines.push('');
  const avx2Head = alsoAvx2 ? ' ours f32 AVX2 GFLOP/s | AVX2 / ref |' : '';
  lines.push(`| shape | M | K | N | ours f32 GFLOP/s | ours bf16-B GFLOP/s | reference GFLOP/s | ours f32 / ref | ours bf16 / ref | f32 best / best |${avx2Head}`);
  lines.push(`|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|${alsoAvx2 ? '---:|---:|' : ''}`);
  for (const r of rows) {
    const x = r as Shape & Record<string, number | undefined>;
    lines.push(
      `| ${x.name} | ${x.M} | ${x.K} | ${x.N} | ${fmt(x.ours_f32_gflops)} | ${fmt(x.ours_bf16_gflops)} | ${fmt(x.ref_gflops)} | ` +
        `${pct(x.ratio_f32)} | ${pct(x.ratio_bf16)} | ${pct(x.ratio_f32_best)} |` +
        (alsoAvx2 ? ` ${fmt(x.ours_avx2_gflops)} | ${pct(x.ref_gflops && x.ours_avx2_gflops ? x.ours_avx2_gflops / x.ref_gflops : undefined)} |` : ''),
    );
  }
  lines.push('');
  const md = lines.join('\n');
  process.stdout.write(md + '\n');
  const outDir = join(here, 'out');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'gemm.md'), md + '\n');
  writeFileSync(
    join(outDir, 'gemm.json'),
    JSON.stringify({ threads, reps, warmup, kernels: gemmKernelName(), gemm: gemmInfo(), reference: refLibrary ?? null, refNote, startLoad, rows }, null, 2) + '\n',
  );
}

await main();
