// Shared helpers of the sparse-coder tests: fixture paths, comparisons.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadSafetensors, saeOps, testing, sparseCoderConfig, SparseCoder, Rng, Tensor, writeCoderDir, type SparseCoderConfig } from '@sparsify/core';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'sae');
export const VARIANTS = [
  'sae_d64_k8',
  'sae_d64_k16',
  'sae_d128_k8',
  'sae_d128_k16',
  'sae_d64_k8_multitopk',
  'sae_d64_k8_groupmax',
  'transcoder_d64_k8',
  'transcoder_d64_k8_skip',
] as const;

export function loadGolden(variant: string): Map<string, Tensor> {
  return loadSafetensors(join(FIXTURES, variant, 'golden.safetensors'));
}

export function f32(t: Tensor | undefined, what = 'tensor'): Float32Array {
  if (!t) throw new Error(`missing ${what}`);
  return t.toFloat32Array();
}

export function scalar(t: Tensor | undefined, what = 'scalar'): number {
  return f32(t, what)[0];
}

/** max |a - b| / max |b| (b is the expected value). */
export function relErrToMax(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return den === 0 ? num : num / den;
}

export function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
}

/** Rows of (values, indices) sorted by value desc, index asc. */
export function sortRows(acts: Float32Array, idx: Int32Array, k: number): { v: number[][]; i: number[][] } {
  const v: number[][] = [];
  const ii: number[][] = [];
  for (let r = 0; r < acts.length / k; r++) {
    const row = [...Array(k).keys()].map((j) => [acts[r * k + j], idx[r * k + j]] as const);
    row.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    v.push(row.map((e) => e[0]));
    ii.push(row.map((e) => e[1]));
  }
  return { v, i: ii };
}

/** A coder with random (non-zero) values in every parameter, written to disk and loaded back. */
export const M = 64;
const D = 16;

export async function randomCoder(cfg: Partial<SparseCoderConfig>, seed: number, dir: string): Promise<SparseCoder> {
  const rng = new Rng(seed);
  const full = sparseCoderConfig({ numLatents: M, expansionFactor: 4, ...cfg });
  const rand = (n: number, s: number) => Float32Array.from({ length: n }, () => s * rng.normal());
  const t = new Map<string, Tensor>();
  t.set('encoder.weight', Tensor.from(rand(M * D, 0.25), [M, D]));
  t.set('encoder.bias', Tensor.from(rand(M, 0.1), [M]));
  const wd = rand(M * D, 0.25);
  t.set('W_dec', Tensor.from(wd, [M, D]));
  t.set('b_dec', Tensor.from(rand(D, 0.2), [D]));
  if (full.skipConnection) t.set('W_skip', Tensor.from(rand(D * D, 0.1), [D, D]));
  writeCoderDir(dir, full, D, t);
  for (const v of t.values()) v.dispose();
  const c = await SparseCoder.loadFromDisk(dir);
  if (full.normalizeDecoder && !full.transcode) await testing.normalizeDecoder(c.params().get('W_dec')!);
  return c;
}

