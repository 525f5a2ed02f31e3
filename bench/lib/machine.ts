/** Facts about the benchmark machine and the conventions shared by the bench scripts. */
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';

import { gemmSummary } from '@sparsify/core';

/** Native thread count the benchmarks use: $SPARSIFY_BENCH_THREADS, default 2 (the issue's setting). */
export function benchThreads(): number {
  const v = Number(process.env.SPARSIFY_BENCH_THREADS ?? '2');
  return Number.isInteger(v) && v > 0 ? v : 2;
}

export function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1].trim();
  } catch {
    // not Linux: fall through
  }
  return cpus()[0]?.model ?? 'unknown CPU';
}

/** SIMD features relevant to the kernels, from /proc/cpuinfo (empty when unknown). */
export function cpuFeatures(): string[] {
  try {
    const m = /^flags\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    const flags = new Set(m ? m[1].split(/\s+/) : []);
    return ['avx2', 'fma', 'f16c', 'avx512f', 'avx512_bf16', 'avx512_fp16'].filter((f) => flags.has(f));
  } catch {
    return [];
  }
}

export function machineLine(): string {
  const feats = cpuFeatures();
  return `${cpuModel()}, ${cpus().length} logical cores${feats.length ? ` (${feats.join(', ')})` : ''}`;
}

/** The CPU GEMM kernel set in use (SPARSIFY_GEMM picks one) with its tile and blocking, for every bench header. */
export function kernelsLine(): string {
  return `CPU GEMM kernels: ${gemmSummary()}`;
}

/**
 * The lines every benchmark section starts with: the CPU, the GEMM kernel path in use (and whether
 * SPARSIFY_GEMM forced it), and the load, so a section read on its own says where it was measured.
 */
export function sectionHeaderLines(): string[] {
  const forced = process.env.SPARSIFY_GEMM ? ` (SPARSIFY_GEMM=${process.env.SPARSIFY_GEMM})` : ' (automatic choice; SPARSIFY_GEMM forces one)';
  return [`Machine: ${machineLine()}; 1/5/15-min load at start ${loadLine()}.`, '', `${kernelsLine()}${forced}.`, ''];
}

/** True when the bench runs in its smoke mode (tiny shapes, one repetition: checks the harness, not speed). */
export function smokeMode(): boolean {
  return process.argv.includes('--smoke') || process.env.SPARSIFY_BENCH_SMOKE === '1';
}

export function loadLine(): string {
  return loadavg()
    .map((x) => x.toFixed(2))
    .join(' / ');
}

/** Median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
