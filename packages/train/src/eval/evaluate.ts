/**
 * evaluate(model, coders, dataset): the coders spliced into the language model, scored by
 * next-token cross-entropy and KL against the clean model, by zero and mean ablation of the same
 * module, and by reconstruction/sparsity at the hookpoint (SAELens `evals.py` / SAEBench "core"
 * metrics; definitions in docs/eval.md).
 *
 * Rows are read in dataset order. Per batch: one clean forward (logits, captures); per coder a
 * spliced, a zero-ablated and a mean-ablated forward; then all coders spliced at once (each
 * seeing the splices upstream of it, as forward hooks would) and all zeroed. A first, cheaper
 * pass (no logits; the forward stops after the deepest hookpoint) gives the per-dimension means
 * that the mean ablation and the centred variance need. A batch's logits are reduced to sums as
 * soon as they are computed; only the clean logits of the current batch are kept meanwhile.
 */
import * as core from '@sparsify/core';
import { ConfigError, DatasetError, ShapeError, Tensor, ValueError } from '@sparsify/core';

import { addKeptRows, ceLossScore, CleanLogits, keepMask, klDivScore, Mean, ReconstructionStats, type ReconstructionMetrics } from './metrics.js';
import { executionOrder, hookOfCoder } from './hook-order.js';
import { spliceTarget } from './splice-target.js';

/** The model side: a LanguageModel of @sparsify/core (structural, for tests). */
export interface EvalModel {
  readonly architecture: string;
  readonly config: Readonly<Record<string, unknown>>;
  readonly path?: string;
  readonly maxPositions?: number;
  readonly device?: string;
  hookpoints(): { name: string; width: number }[];
  inputWidth(name: string): number;
  /** Resolves aliases (TransformerLens names) to the HF module spliced. */
  moduleOf?(name: string): { module: string; source: 'output' | 'input' };
  /** With layerNames: lets the spliced forwards resume above the shared prefix. */
  layerOf?(name: string): number;
  layerNames?(): string[];
  forward(
    tokens: Tensor,
    opts: {
      hookpoints?: readonly string[];
      captureInputs?: boolean;
      logits?: boolean;
      splice?: Map<string, Tensor>;
      resume?: { layer: number; hidden: Tensor };
    },
  ): Promise<{ captured: Map<string, Tensor>; capturedInputs?: Map<string, Tensor>; logits?: Tensor }>;
}

/** A sparse coder (SparseCoder of @sparsify/core). */
export interface EvalCoder {
  readonly cfg: { transcode: boolean; k: number; multiTopk?: boolean; skipConnection?: boolean };
  readonly dIn: number;
  readonly numLatents: number;
  encode(x: Tensor): Promise<{ topActs: Tensor; topIndices: Tensor }>;
  decode(topActs: Tensor, topIndices: Tensor): Promise<Tensor>;
  params(): Map<string, Tensor>;
}

export interface EvalDataset {
  readonly length: number;
  readonly ctxLen: number;
  rows(indices: readonly number[] | Int32Array): Int32Array | Promise<Int32Array>;
}

export interface EvaluateOptions {
  /** Rows per forward (default 8). */
  batchSize?: number;
  /** Evaluate only the first n rows (default: all). */
  maxExamples?: number;
  /** Token ids whose positions are left out of every average (the splice still covers them). */
  excludeTokens?: readonly number[];
  /** Recorded in the report's `model` / `dataset` fields. */
  modelName?: string;
  datasetName?: string;
  /** Run the spliced forwards from the captured residual stream above the shared prefix (default true). */
  sharedPrefix?: boolean;
  /** Called after every batch. */
  onProgress?: (p: { rows: number; totalRows: number; tokens: number; elapsedSec: number }) => void;
}

/** The CE/KL fields of one splice (a hookpoint's coder, or all of them). */
export interface SpliceMetrics {
  ce_loss_clean: number;
  ce_loss_spliced: number;
  ce_loss_zero_ablation: number;
  ce_loss_score: number;
  delta_ce: number;
  kl_div_spliced: number;
  kl_div_zero_ablation: number;
  kl_div_score: number;
}

export interface HookpointEval extends SpliceMetrics, ReconstructionMetrics {
  hookpoint: string;
  transcoder: boolean;
  ce_loss_mean_ablation: number;
  kl_div_mean_ablation: number;
}

export interface EvalReport {
  model: string;
  dataset: string;
  /** Kept (non-excluded) tokens evaluated. */
  tokens: number;
  rows: number;
  ctx_len: number;
  batch_size: number;
  exclude_tokens: number[];
  ce_loss_clean: number;
  /** Keyed by coder name: the hookpoint, or `hook/seedN` for multi-seed runs. */
  hookpoints: Record<string, HookpointEval>;
  all: SpliceMetrics;
  elapsed_s: number;
  tokens_per_s: number;
}

interface CoderSlot {
  name: string;
  hook: string;
  coder: EvalCoder;
  mean: Float64Array;
  recon: ReconstructionStats;
  ce: { spliced: Mean; zero: Mean; meanAbl: Mean };
  kl: { spliced: Mean; zero: Mean; meanAbl: Mean };
}

async function onHost(t: Tensor): Promise<Tensor> {
  return t.device === 'cpu' ? t : t.to('cpu');
}

function disposeAll(...maps: (Map<string, Tensor> | undefined)[]): void {
  for (const m of maps) for (const t of m?.values() ?? []) t.dispose();
}

/** The coder's k-sparse reconstruction of x (with its skip connection), and its latent code. */
async function reconstruct(coder: EvalCoder, x: Tensor): Promise<{ out: Tensor; acts: Float32Array; indices: Int32Array }> {
  const enc = await coder.encode(x);
  try {
    let out = await onHost(await coder.decode(enc.topActs, enc.topIndices));
    const skip = coder.params().get('W_skip');
    if (skip) {
      const withSkip = await core.matmul(x, skip, { bTrans: true, c: out });
      out.dispose();
      out = withSkip;
    }
    const acts = (await onHost(enc.topActs)).toFloat32Array();
    const indices = (await onHost(enc.topIndices)).toInt32Array();
    return { out, acts, indices };
  } finally {
    enc.topActs.dispose();
    enc.topIndices.dispose();
  }
}

function validate(model: EvalModel, coders: Map<string, EvalCoder>, dataset: EvalDataset): void {
  if (!core.parseModelConfig(model.config as Record<string, unknown>).causalLM)
    throw new ConfigError(
      `${model.path ?? 'model'}: ${model.architecture} has no language-model head (lm_head), so its logits cannot be computed; ` +
        'evaluation needs a causal-LM checkpoint (e.g. *ForCausalLM, GPT2LMHeadModel)',
    );
  if (coders.size === 0) throw new ValueError('evaluate: no sparse coders given');
  const widths = new Map(model.hookpoints().map((h) => [h.name, h.width]));
  for (const [name, c] of coders) {
    const hook = spliceTarget(model, hookOfCoder(name));
    const width = widths.get(hook);
    if (width === undefined) {
      let why = `hookpoint '${hook}' is not a module of ${model.architecture} (see model.hookpoints())`;
      try {
        model.moduleOf?.(hook); // a TransformerLens name with no HF tensor says why
      } catch (e) {
        if (e instanceof core.SparsifyError && !/^unknown hookpoint/.test(e.message)) why = e.message;
      }
      throw new ValueError(`evaluate: coder '${name}': ${why}`);
    }
    if (c.dIn !== width) throw new ShapeError(`evaluate: coder '${name}' has d_in ${c.dIn}, but module '${hook}' outputs ${width} features`);
    if (c.cfg.transcode) {
      const wi = model.inputWidth(hook);
      if (wi === 0) throw new ValueError(`evaluate: transcoder '${name}': module '${hook}' takes token ids, it has no activation input`);
      if (wi !== c.dIn) throw new ShapeError(`evaluate: transcoder '${name}' has d_in ${c.dIn}, but module '${hook}' takes ${wi} input features`);
    }
  }
  if (!dataset || typeof dataset.length !== 'number' || typeof dataset.rows !== 'function')
    throw new DatasetError('evaluate: dataset must have a length, a ctxLen and rows(indices)');
  if (dataset.length < 1) throw new DatasetError('evaluate: the dataset is empty');
  if (!Number.isInteger(dataset.ctxLen) || dataset.ctxLen < 2)
    throw new DatasetError(`evaluate: rows of ${dataset.ctxLen} tokens have no next-token targets (ctx_len must be at least 2)`);
  if (model.maxPositions !== undefined && dataset.ctxLen > model.maxPositions)
    throw new DatasetError(`evaluate: ctx_len ${dataset.ctxLen} exceeds the model's max_position_embeddings ${model.maxPositions}`);
}

/**
 * Evaluates `coders` (coder name -> coder; names are hookpoints, or `hook/seedN`) spliced into
 * `model` on the rows of `dataset`, in order.
 */
export async function evaluate(
  model: EvalModel,
  coders: Map<string, EvalCoder> | Record<string, EvalCoder>,
  dataset: EvalDataset,
  opts: EvaluateOptions = {},
): Promise<EvalReport> {
  const coderMap = coders instanceof Map ? coders : new Map(Object.entries(coders));
  validate(model, coderMap, dataset);
  const B = opts.batchSize ?? 8;
  if (!Number.isInteger(B) || B < 1) throw new ValueError(`evaluate: batchSize must be a positive integer, got ${B}`);
  const maxRows = opts.maxExamples ?? dataset.length;
  if (!Number.isInteger(maxRows) || maxRows < 1) throw new ValueError(`evaluate: maxExamples must be a positive integer, got ${maxRows}`);
  const totalRows = Math.min(dataset.length, maxRows);
  const T = dataset.ctxLen;
  const exclude = new Set(opts.excludeTokens ?? []);
  const started = performance.now();

  const slots: CoderSlot[] = [...coderMap].map(([name, coder]) => ({
    name,
    hook: spliceTarget(model, hookOfCoder(name)),
    coder,
    mean: new Float64Array(coder.dIn),
    recon: undefined as unknown as ReconstructionStats,
    ce: { spliced: new Mean(), zero: new Mean(), meanAbl: new Mean() },
    kl: { spliced: new Mean(), zero: new Mean(), meanAbl: new Mean() },
  }));
  const hooks = [...new Set(slots.map((s) => s.hook))];
  const order = executionOrder(model.hookpoints().map((h) => h.name), hooks);
  // "All at once" splices one coder per hookpoint: the first one given for it.
  const allSlots = order.map((h) => slots.find((s) => s.hook === h)!);
  const anyTranscoder = slots.some((s) => s.coder.cfg.transcode);
  // Shared prefix: the clean forward captures the residual stream entering each hookpoint's
  // decoder block, and the spliced/ablated forwards resume there. The GPU forward has the same
  // option but evaluate uses it on the CPU forward only (the GPU path has not been run yet).
  const canResume = opts.sharedPrefix !== false && model.device !== 'cuda' && !!model.layerOf && !!model.layerNames;
  const layerOf = (h: string) => (canResume ? model.layerOf!(h) : -1);
  const blocks = canResume ? model.layerNames!() : [];
  const resumeLayers = [...new Set(hooks.map(layerOf).filter((l) => l >= 0))];
  const blockHooks = resumeLayers.map((l) => blocks[l]);
  const firstLayer = Math.min(...hooks.map(layerOf));

  const batches = async (fn: (tokens: Int32Array, rows: number, keep: Uint8Array) => Promise<void>) => {
    for (let lo = 0; lo < totalRows; lo += B) {
      const idx = Array.from({ length: Math.min(B, totalRows - lo) }, (_, i) => lo + i);
      const ids = await dataset.rows(idx);
      if (ids.length !== idx.length * T) throw new DatasetError(`dataset.rows returned ${ids.length} tokens for ${idx.length} rows of ${T}`);
      await fn(ids, idx.length, keepMask(ids, exclude));
    }
  };

  // Pass 1: per-dimension means of each hookpoint's output over the kept tokens.
  const sums = new Map(hooks.map((h) => [h, new Float64Array(slots.find((s) => s.hook === h)!.coder.dIn)]));
  let kept = 0;
  await batches(async (ids, rows, keep) => {
    const tok = Tensor.from(ids, [rows, T]);
    const out = await model.forward(tok, { hookpoints: hooks, logits: false });
    tok.dispose();
    try {
      for (const h of hooks) addKeptRows(sums.get(h)!, (await onHost(out.captured.get(h)!)).toFloat32Array(), keep);
    } finally {
      disposeAll(out.captured);
    }
    for (const k of keep) kept += k;
  });
  if (kept === 0) throw new DatasetError(`evaluate: every token of the ${totalRows} rows is excluded (--exclude_tokens ${[...exclude].join(' ')})`);
  for (const s of slots) {
    const sum = sums.get(s.hook)!;
    for (let d = 0; d < sum.length; d++) s.mean[d] = sum[d] / kept;
    s.recon = new ReconstructionStats(s.coder.dIn, s.coder.numLatents, s.mean);
  }

  // Pass 2: the clean, spliced and ablated forwards.
  const ceClean = new Mean();
  const all = { ceSpliced: new Mean(), ceZero: new Mean(), klSpliced: new Mean(), klZero: new Mean() };
  let rowsDone = 0;
  await batches(async (ids, rows, keep) => {
    const tok = Tensor.from(ids, [rows, T]);
    const owned: Tensor[] = [tok];
    try {
      const clean = await model.forward(tok, {
        hookpoints: [...new Set([...hooks, ...blockHooks])],
        captureInputs: anyTranscoder || blockHooks.length > 0,
        logits: true,
      });
      // layer -> the residual stream entering that block
      const resumeAt = (layer: number) => {
        const hidden = layer >= 0 ? clean.capturedInputs?.get(blocks[layer]) : undefined;
        return hidden ? { layer, hidden } : undefined;
      };
      const logitsT = clean.logits!;
      const V = logitsT.shape[2];
      const ref = new CleanLogits((await onHost(logitsT)).toFloat32Array(), ids, keep, rows, T, V);
      logitsT.dispose();
      ceClean.add(ref.crossEntropy());
      const scoreRun = async (splice: Map<string, Tensor>, layer: number) => {
        const r = await model.forward(tok, { splice, logits: true, resume: resumeAt(layer) });
        const lg = await onHost(r.logits!);
        const s = ref.score(lg.toFloat32Array());
        r.logits!.dispose();
        lg.dispose();
        return s;
      };
      const recons = new Map<CoderSlot, Tensor>();
      try {
        for (const s of slots) {
          const y = await onHost(clean.captured.get(s.hook)!);
          const x = s.coder.cfg.transcode ? await onHost(clean.capturedInputs!.get(s.hook)!) : y;
          const r = await reconstruct(s.coder, x);
          recons.set(s, r.out);
          s.recon.add(y.toFloat32Array(), r.out.toFloat32Array(), r.acts, r.indices, keep);
        }
        const N = rows * T;
        for (const s of slots) {
          const zeros = Tensor.zeros([N, s.coder.dIn]);
          const meanRows = new Float32Array(N * s.coder.dIn);
          for (let i = 0; i < meanRows.length; i++) meanRows[i] = s.mean[i % s.coder.dIn];
          const meanT = Tensor.from(meanRows, [N, s.coder.dIn]);
          owned.push(zeros, meanT);
          const sp = await scoreRun(new Map([[s.hook, recons.get(s)!]]), layerOf(s.hook));
          s.ce.spliced.add(sp.ce);
          s.kl.spliced.add(sp.kl);
          const z = await scoreRun(new Map([[s.hook, zeros]]), layerOf(s.hook));
          s.ce.zero.add(z.ce);
          s.kl.zero.add(z.kl);
          const m = await scoreRun(new Map([[s.hook, meanT]]), layerOf(s.hook));
          s.ce.meanAbl.add(m.ce);
          s.kl.meanAbl.add(m.kl);
        }
        // All at once, in execution order: each coder encodes what reaches it through the splices upstream.
        const splice = new Map<string, Tensor>();
        for (const [i, s] of allSlots.entries()) {
          if (i === 0) {
            splice.set(s.hook, recons.get(s)!);
            continue;
          }
          const up = await model.forward(tok, { hookpoints: [s.hook], captureInputs: s.coder.cfg.transcode, splice, logits: false, resume: resumeAt(firstLayer) });
          try {
            const x = s.coder.cfg.transcode ? await onHost(up.capturedInputs!.get(s.hook)!) : await onHost(up.captured.get(s.hook)!);
            const r = await reconstruct(s.coder, x);
            owned.push(r.out);
            splice.set(s.hook, r.out);
          } finally {
            disposeAll(up.captured, up.capturedInputs);
          }
        }
        // One coder: "all" is that coder's own splice, scored above.
        if (allSlots.length > 1) {
          const sp = await scoreRun(splice, firstLayer);
          all.ceSpliced.add(sp.ce);
          all.klSpliced.add(sp.kl);
          const zeroAll = new Map(allSlots.map((s) => [s.hook, Tensor.zeros([N, s.coder.dIn])]));
          owned.push(...zeroAll.values());
          const z = await scoreRun(zeroAll, firstLayer);
          all.ceZero.add(z.ce);
          all.klZero.add(z.kl);
        }
      } finally {
        for (const t of recons.values()) t.dispose();
        disposeAll(clean.captured, clean.capturedInputs);
      }
    } finally {
      for (const t of owned) t.dispose();
    }
    rowsDone += rows;
    opts.onProgress?.({ rows: rowsDone, totalRows, tokens: kept, elapsedSec: (performance.now() - started) / 1000 });
  });

  const ce0 = ceClean.value;
  const spliceMetrics = (ceS: number, ceZ: number, klS: number, klZ: number): SpliceMetrics => ({
    ce_loss_clean: ce0,
    ce_loss_spliced: ceS,
    ce_loss_zero_ablation: ceZ,
    ce_loss_score: ceLossScore(ce0, ceS, ceZ),
    delta_ce: ceS - ce0,
    kl_div_spliced: klS,
    kl_div_zero_ablation: klZ,
    kl_div_score: klDivScore(klS, klZ),
  });
  const hookpoints: Record<string, HookpointEval> = {};
  for (const s of slots) {
    hookpoints[s.name] = {
      hookpoint: s.hook,
      transcoder: s.coder.cfg.transcode,
      ...spliceMetrics(s.ce.spliced.value, s.ce.zero.value, s.kl.spliced.value, s.kl.zero.value),
      ce_loss_mean_ablation: s.ce.meanAbl.value,
      kl_div_mean_ablation: s.kl.meanAbl.value,
      ...s.recon.result(),
    };
  }
  const single = allSlots.length === 1 ? hookpoints[allSlots[0].name] : undefined;
  const allMetrics = single
    ? spliceMetrics(single.ce_loss_spliced, single.ce_loss_zero_ablation, single.kl_div_spliced, single.kl_div_zero_ablation)
    : spliceMetrics(all.ceSpliced.value, all.ceZero.value, all.klSpliced.value, all.klZero.value);
  const elapsed = (performance.now() - started) / 1000;
  return {
    model: opts.modelName ?? model.path ?? model.architecture,
    dataset: opts.datasetName ?? '',
    tokens: kept,
    rows: totalRows,
    ctx_len: T,
    batch_size: B,
    exclude_tokens: [...exclude],
    ce_loss_clean: ce0,
    hookpoints,
    all: allMetrics,
    elapsed_s: elapsed,
    tokens_per_s: (totalRows * T) / elapsed,
  };
}
