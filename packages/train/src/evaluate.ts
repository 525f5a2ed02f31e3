/**
 * Held-out evaluation of trained coders: FVU over all evaluation tokens (sum of squared errors
 * over the total centred variance, accumulated across batches) and the fraction of latents that
 * never fire on them.
 */
import { SparseCoder, Tensor, type Device, type ForwardOutput, type LanguageModel } from '@sparsify/core';
import { join } from 'node:path';

import type { TokenDatasetLike } from './trainer.js';

export interface EvalResult {
  fvu: number;
  /** Latents never selected on the evaluation tokens. */
  deadFraction: number;
  tokens: number;
}

/**
 * Evaluates the coders saved in `runDir/{name}` for each hookpoint on `dataset`.
 * `transcode` coders get the module input and are scored against the module output.
 */
export async function evaluateRun(
  runDir: string,
  names: string[],
  model: LanguageModel,
  dataset: TokenDatasetLike,
  opts: { batchSize?: number; device?: Device } = {},
): Promise<Record<string, EvalResult>> {
  const coders = new Map<string, SparseCoder>();
  for (const n of names) coders.set(n, await SparseCoder.loadFromDisk(join(runDir, n), { device: opts.device }));
  const hookOf = (n: string) => n.replace(/\/seed\d+$/, '');
  const hooks = [...new Set(names.map(hookOf))];
  const transcode = [...coders.values()].some((c) => c.cfg.transcode);
  const B = opts.batchSize ?? 8;
  const T = dataset.ctxLen;
  // Two passes: the target means first (for the centred variance), then errors and firing.
  const sums = new Map<string, Float64Array>();
  const sq = new Map<string, number>();
  let tokens = 0;
  const batches = async (fn: (out: ForwardOutput) => Promise<void>) => {
    for (let lo = 0; lo < dataset.length; lo += B) {
      const idx = Array.from({ length: Math.min(B, dataset.length - lo) }, (_, i) => lo + i);
      const ids = await dataset.rows(idx);
      const t = Tensor.from(ids, [idx.length, T]);
      const out = await model.forward(t, { hookpoints: hooks, captureInputs: transcode });
      t.dispose();
      await fn(out);
      for (const x of out.captured.values()) x.dispose();
      for (const x of out.capturedInputs?.values() ?? []) x.dispose();
    }
  };
  await batches(async (out) => {
    for (const h of hooks) {
      const y = out.captured.get(h)!.toFloat32Array();
      const D = out.captured.get(h)!.shape[1];
      const s = sums.get(h) ?? new Float64Array(D);
      let q = sq.get(h) ?? 0;
      for (let i = 0; i < y.length; i++) {
        s[i % D] += y[i];
        q += y[i] * y[i];
      }
      sums.set(h, s);
      sq.set(h, q);
    }
    tokens += out.captured.get(hooks[0])!.shape[0];
  });
  const sse = new Map<string, number>();
  const fired = new Map<string, Uint8Array>();
  await batches(async (out) => {
    for (const n of names) {
      const c = coders.get(n)!;
      const h = hookOf(n);
      const y = out.captured.get(h)!;
      const x = c.cfg.transcode ? out.capturedInputs!.get(h)! : y;
      const r = await c.forward(x, { y: c.cfg.transcode ? y : undefined });
      const a = r.saeOut.toFloat32Array();
      const b = y.toFloat32Array();
      let e = 0;
      for (let i = 0; i < a.length; i++) e += (a[i] - b[i]) ** 2;
      sse.set(n, (sse.get(n) ?? 0) + e);
      const f = fired.get(n) ?? new Uint8Array(c.numLatents);
      // Firing = selected by the k-sparse code with a positive activation.
      const enc = await c.encode(x);
      const idx = enc.topIndices.toInt32Array();
      const acts = enc.topActs.toFloat32Array();
      for (let i = 0; i < idx.length; i++) if (acts[i] > 0) f[idx[i]] = 1;
      enc.topActs.dispose();
      enc.topIndices.dispose();
      fired.set(n, f);
      r.saeOut.dispose();
      r.latentActs.dispose();
      r.latentIndices.dispose();
    }
  });
  const result: Record<string, EvalResult> = {};
  for (const n of names) {
    const h = hookOf(n);
    const s = sums.get(h)!;
    let totalVar = sq.get(h)!;
    for (const v of s) totalVar -= (v * v) / tokens;
    const f = fired.get(n)!;
    let dead = 0;
    for (const v of f) if (!v) dead++;
    result[n] = { fvu: sse.get(n)! / totalVar, deadFraction: dead / f.length, tokens };
    coders.get(n)!.dispose();
  }
  return result;
}
