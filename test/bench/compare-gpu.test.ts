// bench/lib/compare-gpu.ts on synthetic outputs of bench/cuda.ts (--json) and
// bench/ref/sparsify_gpu_step.py (--json): ratios only for the same device and shapes, goals, skips,
// and the command line that scripts/gpu-check.sh runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { compareGpu, summaryLines, STEP_GOAL, ENCODER_GOAL_PCT } from '../../bench/lib/compare-gpu.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

// The keys bench/cuda.ts writes (values drawn at random so no number is special).
function ours(o: { name?: string; quick?: boolean; stepTok?: number; encTf?: number } = {}) {
  const q = o.quick ?? false;
  return {
    device: { devices: 1, name: o.name ?? 'NVIDIA H100 80GB HBM3', computeCapability: '9.0' },
    roofline: { copyGBs: 2000 + Math.random() * 1000, gemmTflops: 300 + Math.random() * 200, gemmSize: q ? 4096 : 8192 },
    encode: { n: q ? 4096 : 16384, d: q ? 2048 : 4096, m: q ? 32768 : 131072, k: 32, ms: 50, tflops: o.encTf ?? 400, pctOfGemm: 90 },
    trainStep: { N: 4096, D: 768, M: 24576, k: 32, ms: 100, tokensPerSecond: 40000 },
    residentTrainStep: { n: q ? 2048 : 8192, d: q ? 1024 : 4096, m: q ? 16384 : 131072, k: 32, ms: 60, tokensPerSecond: o.stepTok ?? 1e5 },
  };
}

// The keys sparsify_gpu_step.py writes.
function ref(o: { device?: string; quick?: boolean; tok?: number; mmEnc?: number } = {}) {
  const q = o.quick ?? false;
  const enc = { n: q ? 4096 : 16384, d: q ? 2048 : 4096, m: q ? 32768 : 131072 };
  return {
    library: 'sparsify', torch: '2.11.0+cu130', device: o.device ?? 'NVIDIA H100 80GB HBM3', x_dtype: 'bf16',
    shape: { n: q ? 2048 : 8192, d: q ? 1024 : 4096, m: q ? 16384 : 131072, k: 32, dead_every: 10 },
    tokens_per_s: o.tok ?? 5e4, ms_per_step: 160,
    roofline: {
      matmul_square: { size: q ? 4096 : 8192, ms: 1.4, tflops: 700 + Math.random() * 100 },
      matmul_encoder: { ...enc, ms: 30, tflops: o.mmEnc ?? 650 },
      copy: { bytes: 2 ** 30, ms: 0.7, gbs: 2800 + Math.random() * 300 },
    },
    encode: { ...enc, k: 32, ms: 80, tokens_per_s: 2e5, tflops: 200 + Math.random() * 100 },
  };
}

test('same device and shapes: ratios, percentages and goals', () => {
  const stepTok = 1e5 + Math.random() * 1e5, tok = 4e4 + Math.random() * 4e4;
  const encTf = 300 + Math.random() * 300, mmEnc = 500 + Math.random() * 300;
  const a = ours({ stepTok, encTf }), b = ref({ tok, mmEnc });
  const c = compareGpu(a, b);
  assert.equal(c.skipped, undefined);
  assert.equal(c.device!.same, true);
  assert.ok(Math.abs(c.trainStep!.speedup! - stepTok / tok) < 1e-12);
  assert.equal(c.goals!.trainStepSpeedup.met, stepTok / tok >= STEP_GOAL);
  assert.ok(Math.abs(c.encoder!.pctOfTorchMatmul! - (100 * encTf) / mmEnc) < 1e-9);
  assert.equal(c.goals!.encoderPctOfTorchMatmul.met, (100 * encTf) / mmEnc >= ENCODER_GOAL_PCT);
  assert.ok(Math.abs(c.encoder!.speedupVsSparsifyEncode! - encTf / b.encode.tflops) < 1e-12);
  assert.ok(Math.abs(c.gemm!.pctOfTorch! - (100 * a.roofline.gemmTflops) / b.roofline.matmul_square.tflops) < 1e-9);
  assert.ok(Math.abs(c.copy!.pctOfTorch! - (100 * a.roofline.copyGBs) / b.roofline.copy.gbs) < 1e-9);
  const lines = summaryLines(c).join('\n');
  assert.match(lines, new RegExp(`-> ${(stepTok / tok).toFixed(2)}x`));
  assert.match(lines, /goal >= 1.5x: (MET|MISSED)/);
});

test('goal verdicts on both sides of the thresholds', () => {
  const met = compareGpu(ours({ stepTok: 3e5, encTf: 600 }), ref({ tok: 1e5, mmEnc: 700 }));
  assert.equal(met.goals!.trainStepSpeedup.met, true);
  assert.equal(met.goals!.encoderPctOfTorchMatmul.met, true);
  const missed = compareGpu(ours({ stepTok: 1.4e5, encTf: 400 }), ref({ tok: 1e5, mmEnc: 700 }));
  assert.equal(missed.goals!.trainStepSpeedup.met, false);
  assert.equal(missed.goals!.encoderPctOfTorchMatmul.met, false);
  assert.match(summaryLines(missed).join('\n'), /MISSED/);
});

test('different shapes (one side --quick): no ratios, notes say why', () => {
  const c = compareGpu(ours({ quick: true }), ref({ quick: false }));
  assert.equal(c.trainStep!.speedup, null);
  assert.equal(c.encoder!.pctOfTorchMatmul, null);
  assert.equal(c.gemm!.pctOfTorch, null);
  assert.equal(c.goals!.trainStepSpeedup.met, null);
  assert.ok(c.notes.some((n) => /training-step shapes differ.*N=2048.*N=8192/.test(n)), c.notes.join('\n'));
  assert.ok(c.notes.some((n) => /encoder shapes differ/.test(n)));
  assert.match(summaryLines(c).join('\n'), /not measured/);
  // Both quick: comparable again.
  assert.notEqual(compareGpu(ours({ quick: true }), ref({ quick: true })).trainStep!.speedup, null);
});

test('different devices: no ratios', () => {
  const c = compareGpu(ours({ name: 'NVIDIA H100 80GB HBM3' }), ref({ device: 'NVIDIA H200' }));
  assert.equal(c.device!.same, false);
  assert.equal(c.trainStep!.speedup, null);
  assert.equal(c.encoder!.pctOfTorchMatmul, null);
  assert.equal(c.copy!.pctOfTorch, null);
  assert.ok(c.notes.some((n) => n.startsWith('devices differ')));
});

test('skipped or missing inputs give a skip reason, not numbers', () => {
  assert.match(compareGpu({ skipped: 'no CUDA device' }, ref()).skipped!, /our benchmark was skipped: no CUDA device/);
  assert.match(compareGpu(ours(), { library: 'sparsify', skipped: 'torch sees no CUDA device' }).skipped!, /sparsify's benchmark was skipped/);
  assert.match(compareGpu(undefined, ref()).skipped!, /our benchmark output is missing/);
  assert.match(compareGpu(ours(), [1, 2]).skipped!, /sparsify's benchmark output is missing/);
  assert.deepEqual(summaryLines(compareGpu(undefined, undefined)), ['GPU comparison skipped: our benchmark output is missing or not a JSON object']);
});

test('a partial bench.json (resident step missing, NaN rate) compares what it can', () => {
  const a: Record<string, unknown> = ours();
  delete a.residentTrainStep;
  (a.encode as Record<string, unknown>).tflops = Number.NaN;
  const c = compareGpu(a, ref());
  assert.equal(c.trainStep!.speedup, null);
  assert.equal(c.encoder!.pctOfTorchMatmul, null);
  assert.notEqual(c.gemm!.pctOfTorch, null);
  assert.ok(c.notes.some((n) => /no tokens\/s/.test(n)));
});

test('command line: writes compare.json and prints the summary lines', () => {
  const dir = mkdtempSync(join(tmpdir(), 'compare-gpu-'));
  const a = ours(), b = ref();
  writeFileSync(join(dir, 'bench.json'), JSON.stringify(a));
  writeFileSync(join(dir, 'sparsify-gpu.json'), JSON.stringify(b, null, 2));
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', join(root, 'bench', 'lib', 'compare-gpu.ts'), ...args], { cwd: root, encoding: 'utf8' });
  const r = run(join(dir, 'bench.json'), join(dir, 'sparsify-gpu.json'), '--out', join(dir, 'compare.json'));
  assert.equal(r.status, 0, r.stderr);
  const c = JSON.parse(readFileSync(join(dir, 'compare.json'), 'utf8'));
  assert.deepEqual(c, JSON.parse(JSON.stringify(compareGpu(a, b))));
  assert.match(r.stdout, /train step tokens\/s: ours 100000, sparsify 50000 -> 2.00x/);
  // A missing or unreadable file is a skip (exit 0), a wrong call is exit 2.
  writeFileSync(join(dir, 'bad.json'), '{not json');
  const s = run(join(dir, 'bench.json'), join(dir, 'bad.json'));
  assert.equal(s.status, 0);
  assert.match(s.stdout, /GPU comparison skipped: sparsify's benchmark output is missing/);
  assert.equal(run(join(dir, 'bench.json')).status, 2);
});
