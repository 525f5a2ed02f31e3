/**
 * GPU comparison: our CUDA benchmark (bench/cuda.ts --json) next to Python sparsify
 * on the same GPU in the same run (bench/ref/sparsify_gpu_step.py --json). scripts/gpu-check.sh
 * runs it as
 *   node --import tsx bench/lib/compare-gpu.ts <bench.json> <sparsify-gpu.json> [--out compare.json]
 * and appends the printed lines to summary.txt. Ratios are given only where both sides measured
 * the same shape on the same device; otherwise the entry is null and a note says why.
 * Goals: resident training step >= 1.5x sparsify's tokens/s; fused encoder >= 70% of torch's
 * (cuBLAS) bf16 matmul rate at the encoder's shape.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

export const STEP_GOAL = 1.5;
export const ENCODER_GOAL_PCT = 70;

type Json = Record<string, unknown>;

export interface Goal {
  value: number | null;
  goal: number;
  met: boolean | null;
}

export interface GpuComparison {
  skipped?: string;
  device?: { ours: string | null; sparsify: string | null; same: boolean };
  trainStep?: {
    shape: Json | null;
    oursTokensPerS: number | null;
    sparsifyTokensPerS: number | null;
    speedup: number | null;
    sparsifyXDtype: string | null;
  };
  encoder?: {
    shape: Json | null;
    oursTflops: number | null;
    torchMatmulTflops: number | null;
    pctOfTorchMatmul: number | null;
    sparsifyEncodeTflops: number | null;
    speedupVsSparsifyEncode: number | null;
  };
  gemm?: { size: number | null; oursTflops: number | null; torchTflops: number | null; pctOfTorch: number | null };
  copy?: { oursGBs: number | null; torchGBs: number | null; pctOfTorch: number | null };
  goals?: { trainStepSpeedup: Goal; encoderPctOfTorchMatmul: Goal };
  notes: string[];
}

function obj(v: unknown): Json | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
}

/** A finite positive number at obj.path (dotted), else null. */
function num(o: unknown, path: string): number | null {
  let cur: unknown = o;
  for (const key of path.split('.')) cur = obj(cur)?.[key];
  return typeof cur === 'number' && Number.isFinite(cur) && cur > 0 ? cur : null;
}

function str(o: unknown, key: string): string | null {
  const v = obj(o)?.[key];
  return typeof v === 'string' ? v : null;
}

function ratio(a: number | null, b: number | null): number | null {
  return a !== null && b !== null ? a / b : null;
}

/** Same values for the given keys in both objects (all present and numeric). */
function sameShape(a: unknown, b: unknown, keys: string[]): boolean {
  return keys.every((k) => num(a, k) !== null && num(a, k) === num(b, k));
}

function shapeText(o: unknown, keys: string[]): string {
  return keys.map((k) => `${k.toUpperCase()}=${num(o, k) ?? '?'}`).join(' ');
}

function goal(value: number | null, target: number): Goal {
  return { value, goal: target, met: value === null ? null : value >= target };
}

/** Compares the two benchmark outputs (already parsed JSON; either may be a {skipped} object). */
export function compareGpu(ours: unknown, ref: unknown): GpuComparison {
  const notes: string[] = [];
  const o = obj(ours), r = obj(ref);
  if (!o) return { skipped: 'our benchmark output is missing or not a JSON object', notes };
  if (!r) return { skipped: "sparsify's benchmark output is missing or not a JSON object", notes };
  if (typeof o.skipped === 'string') return { skipped: `our benchmark was skipped: ${o.skipped}`, notes };
  if (typeof r.skipped === 'string') return { skipped: `sparsify's benchmark was skipped: ${r.skipped}`, notes };

  const oursDevice = str(o.device, 'name'), refDevice = str(r, 'device');
  const sameDevice = oursDevice !== null && oursDevice === refDevice;
  if (!sameDevice) notes.push(`devices differ or are unknown (ours: ${oursDevice}, sparsify: ${refDevice}): no ratios`);

  // Training step: ours resident (CudaSaeState) vs sparsify's trainer step, same N, D, M, k.
  const stepKeys = ['n', 'd', 'm', 'k'];
  const oursStep = obj(o.residentTrainStep), refShape = obj(r.shape);
  const stepMatch = sameShape(oursStep, refShape, stepKeys);
  if (oursStep && refShape && !stepMatch)
    notes.push(`training-step shapes differ (ours ${shapeText(oursStep, stepKeys)}, sparsify ${shapeText(refShape, stepKeys)}): no ratio`);
  const oursTok = num(oursStep, 'tokensPerSecond'), refTok = num(r, 'tokens_per_s');
  if (oursTok === null) notes.push('our resident training step has no tokens/s (bench/cuda.ts failed before it?)');
  if (refTok === null) notes.push("sparsify's training step has no tokens/s");
  const speedup = sameDevice && stepMatch ? ratio(oursTok, refTok) : null;
  const xDtype = str(r, 'x_dtype');
  if (xDtype) notes.push(`inputs: ours f32 x already on the GPU (a device tensor); sparsify ${xDtype} x already on the GPU`);

  // Encoder: our fused TopK encoder vs torch's plain bf16 GEMM at the same shape (and sparsify's encode).
  const encKeys = ['n', 'd', 'm'];
  const oursEnc = obj(o.encode), torchEnc = obj(obj(r.roofline)?.matmul_encoder), refEnc = obj(r.encode);
  const encMatch = sameShape(oursEnc, torchEnc, encKeys);
  if (oursEnc && torchEnc && !encMatch)
    notes.push(`encoder shapes differ (ours ${shapeText(oursEnc, encKeys)}, torch ${shapeText(torchEnc, encKeys)}): no percentage`);
  const oursEncTf = num(oursEnc, 'tflops'), torchEncTf = num(torchEnc, 'tflops');
  const pctEnc = sameDevice && encMatch ? ratio(oursEncTf, torchEncTf) : null;
  const refEncTf = num(refEnc, 'tflops');
  const encVsSparsify = sameDevice && sameShape(oursEnc, refEnc, [...encKeys, 'k']) ? ratio(oursEncTf, refEncTf) : null;

  // Roofline: our own mma.sync GEMM vs cuBLAS (square), and copy bandwidth.
  const gemmSize = num(o.roofline, 'gemmSize');
  const gemmMatch = gemmSize !== null && gemmSize === num(r, 'roofline.matmul_square.size');
  const oursGemm = num(o.roofline, 'gemmTflops'), torchGemm = num(r, 'roofline.matmul_square.tflops');
  const oursCopy = num(o.roofline, 'copyGBs'), torchCopy = num(r, 'roofline.copy.gbs');

  const pct = (v: number | null) => (v === null ? null : 100 * v);
  const result: GpuComparison = {
    device: { ours: oursDevice, sparsify: refDevice, same: sameDevice },
    trainStep: { shape: stepMatch ? (refShape ?? null) : null, oursTokensPerS: oursTok, sparsifyTokensPerS: refTok, speedup, sparsifyXDtype: xDtype },
    encoder: {
      shape: encMatch ? (torchEnc ?? null) : null,
      oursTflops: oursEncTf,
      torchMatmulTflops: torchEncTf,
      pctOfTorchMatmul: pct(pctEnc),
      sparsifyEncodeTflops: refEncTf,
      speedupVsSparsifyEncode: encVsSparsify,
    },
    gemm: { size: gemmSize, oursTflops: oursGemm, torchTflops: torchGemm, pctOfTorch: sameDevice && gemmMatch ? pct(ratio(oursGemm, torchGemm)) : null },
    copy: { oursGBs: oursCopy, torchGBs: torchCopy, pctOfTorch: sameDevice ? pct(ratio(oursCopy, torchCopy)) : null },
    goals: { trainStepSpeedup: goal(speedup, STEP_GOAL), encoderPctOfTorchMatmul: goal(pct(pctEnc), ENCODER_GOAL_PCT) },
    notes,
  };
  return result;
}

const fmt = (v: number | null, digits = 0, unit = '') => (v === null ? 'n/a' : `${v.toFixed(digits)}${unit}`);
const verdict = (g: Goal) => (g.met === null ? 'not measured' : g.met ? 'MET' : 'MISSED');

/** Short text lines for summary.txt. */
export function summaryLines(c: GpuComparison): string[] {
  if (c.skipped) return [`GPU comparison skipped: ${c.skipped}`];
  const t = c.trainStep!, e = c.encoder!, g = c.gemm!, cp = c.copy!, goals = c.goals!;
  return [
    `device: ours ${c.device!.ours ?? '?'}, sparsify ${c.device!.sparsify ?? '?'}`,
    `train step tokens/s: ours ${fmt(t.oursTokensPerS)}, sparsify ${fmt(t.sparsifyTokensPerS)} -> ${fmt(t.speedup, 2, 'x')} (goal >= ${goals.trainStepSpeedup.goal}x: ${verdict(goals.trainStepSpeedup)})`,
    `fused encoder: ${fmt(e.oursTflops)} TFLOP/s = ${fmt(e.pctOfTorchMatmul)}% of torch bf16 matmul at that shape (${fmt(e.torchMatmulTflops)} TFLOP/s) (goal >= ${goals.encoderPctOfTorchMatmul.goal}%: ${verdict(goals.encoderPctOfTorchMatmul)}); vs sparsify encode ${fmt(e.speedupVsSparsifyEncode, 2, 'x')}`,
    `own GEMM ${g.size ?? '?'}^3: ${fmt(g.oursTflops)} TFLOP/s = ${fmt(g.pctOfTorch)}% of torch (${fmt(g.torchTflops)})`,
    `copy: ours ${fmt(cp.oursGBs)} GB/s, torch ${fmt(cp.torchGBs)} GB/s (${fmt(cp.pctOfTorch)}%)`,
    ...c.notes.map((n) => `note: ${n}`),
  ];
}

function readJson(path: string): unknown {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const outIdx = args.indexOf('--out');
  const out = outIdx >= 0 ? args[outIdx + 1] : undefined;
  const files = outIdx >= 0 ? args.filter((_, i) => i !== outIdx && i !== outIdx + 1) : args;
  if (files.length !== 2 || (outIdx >= 0 && !out)) {
    console.error('usage: compare-gpu.ts <bench.json> <sparsify-gpu.json> [--out compare.json]');
    process.exit(2);
  }
  const c = compareGpu(readJson(files[0]), readJson(files[1]));
  if (out) writeFileSync(out, JSON.stringify(c, null, 2) + '\n');
  for (const line of summaryLines(c)) console.log(line);
}
