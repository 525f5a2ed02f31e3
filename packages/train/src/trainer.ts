/**
 * Trainer: sparsify's Trainer(cfg, dataset, model).fit() on the native backend. Per batch:
 * token rows -> native model forward with hook capture -> per hookpoint (and seed) one native
 * forward/backward of its sparse coder (micro-batched if asked); every grad_acc_steps batches
 * one optimizer step, dead-latent counters, metrics, checkpoints. Activations stay native.
 *
 * Deliberate differences from sparsify 1.3 (all upstream bugs or later fixes): AuxK without
 * the extra b_dec (#134), real micro-batching (#138), adam default (#139), multi-seed works,
 * logged averages are right for any log frequency, resume continues at the next batch and
 * reads save_dir, save points are every save_every optimizer steps (not off by one).
 */
// SparseCoder, createOptimizer and resolveHookpoints are looked up on the namespace at run time:
// they were written in parallel with this package, and a missing one gives a clear ConfigError.
import * as core from '@sparsify/core';
import { ConfigError, FileFormatError, Tensor, ValueError, numLatentsOf, resolveLocalOrHub } from '@sparsify/core';
import { EventEmitter } from 'node:events';
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { DeadLatentCounter } from './dead-latents.js';
import { TrainingEvaluator, type TrainingEvalOptions } from './eval/training-eval.js';
import type { EvalModel } from './eval/evaluate.js';
import { loadInt64Safetensors, saveInt64Safetensors } from './int64-safetensors.js';
import { pyJson } from './py-json.js';
import { METRICS_FILE, truncateMetrics } from './metrics-log.js';
import { checkCounters, checkOptimizerState, checkResumeConfig, readTrainerState, STATE_FORMAT } from './resume-check.js';
import { claimRunFolder } from './run-claim.js';
import { recoverRunFolder, replaceRunFolder, STATE_FILE } from './run-folder.js';
import type { RunLock } from './run-lock.js';
import { TRAIN_ITERATE, dropLegacyTrainIterate, trainIterateDir } from './train-iterate.js';
import { checkBatchSize, checkDatasetShape, checkExcludeTokens, checkSizes, withHookpointContext } from './trainer-checks.js';
import { currentK, defaultLr, initialK, linearWarmupDecay } from './schedules.js';
import { loadStateDict, saveStateDict } from './state-dict-io.js';
import { assertSupportedLossFn, trainConfigJson, validateTrainConfig, type RunConfig, type TrainConfig } from './train-config.js';
import { gatherRows, rowSlice, totalVariance } from './train-ops.js';

// ---- the pieces the trainer uses (structural types of @sparsify/core's classes) ----

export interface TokenDatasetLike {
  readonly length: number;
  readonly ctxLen: number;
  /** Token ids of the given rows, concatenated (rows × ctxLen). */
  rows(indices: readonly number[] | Int32Array): Int32Array | Promise<Int32Array>;
}

export interface ModelLike {
  readonly numLayers: number;
  hookpoints(): { name: string; width: number }[];
  /** Input width of a hookpoint (transcoders need it equal to the output width). */
  inputWidth?(name: string): number;
  /** Width of any hookpoint name the model accepts, including aliases (TransformerLens names). */
  width?(name: string): number;
  forward(
    tokens: Tensor,
    opts: { hookpoints: string[]; captureInputs?: boolean; logits?: boolean },
  ): Promise<{ captured: Map<string, Tensor>; capturedInputs?: Map<string, Tensor> }>;
}

export interface StepResult {
  loss: number;
  fvu: number;
  auxkLoss: number;
  multiTopkFvu: number;
}

export interface CoderLike {
  readonly cfg: core.SparseCoderConfig;
  readonly dIn: number;
  readonly numLatents: number;
  params(): Map<string, Tensor>;
  initBiasesFromBatch(x: Tensor, y?: Tensor): Promise<void> | void;
  forwardBackward(
    x: Tensor,
    opts: { y?: Tensor; deadMask?: Tensor | Uint8Array; auxkAlpha: number; lossScale?: number; totalVariance?: number; didFire?: Tensor; rows?: [number, number] },
  ): Promise<StepResult>;
  zeroGrad(): void;
  saveToDisk(dir: string): Promise<void> | void;
  dispose?(): void;
}

export interface OptimizerLike {
  lr: number;
  /** vectorLrMultiplier: muon's Adam half (1-D parameters). */
  step(lrMultiplier?: number, vectorLrMultiplier?: number): Promise<void> | void;
  eval(): Promise<void> | void;
  train(): Promise<void> | void;
  stateDict(): unknown;
  /** Both devices (cuda optimizers keep their state on the device). */
  readStateDict?(): Promise<unknown>;
  readonly onCuda?: boolean;
  loadStateDict(state: unknown): Promise<void> | void;
}

// ---- events ----

export interface CoderMetrics {
  fvu: number;
  auxk: number;
  multiTopkFvu: number;
  deadPct: number;
  numDead: number;
}

export interface StepInfo {
  /** Optimizer steps done (1-based). */
  step: number;
  totalSteps: number;
  /** Batches processed so far. */
  batches: number;
  totalBatches: number;
  /** Non-excluded tokens trained on so far (this run, including resumed steps). */
  tokens: number;
  k: number;
  lr: number[];
  /** Per coder name: averages over the batches (and micro-batches) of this step. */
  coders: Record<string, CoderMetrics>;
  elapsedSec: number;
}

export interface LogInfo {
  step: number;
  /** Averages over the last wandb_log_frequency steps, keyed like sparsify's wandb logs (fvu/h.0, dead_pct/h.0, k). */
  values: Record<string, number>;
}

export interface FitResult {
  steps: number;
  batches: number;
  tokens: number;
  stopped: boolean;
  runDir: string;
  final: Record<string, CoderMetrics>;
  elapsedSec: number;
}

export interface TrainerOptions {
  /**
   * Where the coders (and their optimizers) live. 'cuda': coders and optimizer state on the
   * GPU (CUDA build; never run on a GPU yet); captured activations of a cuda model go to the
   * coders without a host copy. The model's device is the model's own (see loadModel).
   */
  device?: core.Device;
  /** Write checkpoints and metrics.jsonl (default true). */
  save?: boolean;
  onStep?: (s: StepInfo) => void;
  onLog?: (l: LogInfo) => void;
  onSave?: (dir: string, step: number) => void;
  /**
   * Start from the coders in `{initFrom}/{name}/` instead of fresh random ones; unlike
   * finetune, the first-batch bias init still runs (for reproducing a run from its init).
   */
  initFrom?: string;
  /** A fresh run may replace an existing run folder (the CLI's --overwrite); otherwise that is a ConfigError. */
  overwrite?: boolean;
  /** Held-out evaluation with the coders spliced into the model (see eval/training-eval.ts). */
  evaluation?: TrainingEvalOptions;
}

interface CoderEntry {
  name: string;
  hook: string;
  seed: number;
  coder: CoderLike;
  counter: DeadLatentCounter;
  didFire?: Tensor;
}

function runDirOf(cfg: TrainConfig): string {
  return join(cfg.saveDir, cfg.runName || 'unnamed');
}

async function maybe<T>(v: T | Promise<T>): Promise<T> {
  return v;
}

/** Resolves hookpoint names (patterns, layers, stride) with the model's own resolver. */
function resolveHooks(cfg: TrainConfig, model: ModelLike): string[] {
  const resolve = (core as unknown as Record<string, unknown>).resolveHookpoints as
    | ((m: unknown, o: { hookpoints?: string[]; layers?: number[]; layerStride?: number }) => string[] | { name: string }[])
    | undefined;
  if (!resolve) throw new ConfigError('resolveHookpoints is not available in @sparsify/core');
  let r: string[] | { name: string }[];
  try {
    r = resolve(model, { hookpoints: cfg.hookpoints, layers: cfg.layers, layerStride: cfg.layerStride });
  } catch (e) {
    if (e instanceof ValueError) throw new ConfigError(`${cfg.hookpoints.length ? '--hookpoints' : '--layers'}: ${e.message}`);
    throw e;
  }
  return r.map((x) => (typeof x === 'string' ? x : x.name));
}

export class Trainer extends EventEmitter {
  readonly cfg: TrainConfig;
  readonly dataset: TokenDatasetLike;
  readonly model: ModelLike;
  readonly device: core.Device;
  readonly runDir: string;
  hookpoints: string[] = [];
  widths = new Map<string, number>();
  coders: CoderEntry[] = [];
  optimizers: OptimizerLike[] = [];
  /** Batches processed (the index of the next batch). */
  globalStep = 0;
  /** Optimizer steps done. */
  optStep = 0;
  tokensSeen = 0;
  bestLoss = new Map<string, number>();
  private initialized = false;
  private resumed = false;
  private resuming = false;
  private lock?: RunLock;
  private stopRequested = false;
  private readonly opts: TrainerOptions;
  private initialK = 0;
  private lastStepMetrics: Record<string, CoderMetrics> = {};
  private readonly evaluator: TrainingEvaluator | undefined;

  constructor(cfg: TrainConfig | RunConfig, dataset: TokenDatasetLike, model: ModelLike, opts: TrainerOptions = {}) {
    super();
    validateTrainConfig(cfg);
    assertSupportedLossFn(cfg);
    checkDatasetShape(dataset);
    this.cfg = structuredClone(cfg);
    this.dataset = dataset;
    this.model = model;
    this.device = opts.device ?? 'cpu';
    this.opts = opts;
    this.runDir = runDirOf(this.cfg);
    this.evaluator = opts.evaluation ? new TrainingEvaluator(opts.evaluation, model as unknown as EvalModel) : undefined;
  }

  /** Batches per epoch used for the LR schedule (floor, like sparsify's num_batches). */
  get numBatches(): number {
    return Math.floor(this.dataset.length / this.cfg.batchSize);
  }

  /** Batches actually processed (a ragged final batch included). */
  get totalBatches(): number {
    return Math.ceil(this.dataset.length / this.cfg.batchSize);
  }

  get totalSteps(): number {
    return Math.floor(this.totalBatches / this.cfg.gradAccSteps);
  }

  /** Asks fit() to stop after the current batch, save a checkpoint and return. */
  requestStop(): void {
    this.stopRequested = true;
  }

  /** Resolves hookpoints and widths and creates the coders (and loads finetune weights). */
  async init(): Promise<void> {
    if (this.initialized) return;
    if (this.opts.save !== false) this.lock ??= claimRunFolder(this.runDir, { resume: this.resuming, overwrite: this.opts.overwrite });
    try {
      await this.initCoders();
    } catch (e) {
      this.releaseLock();
      throw e;
    }
    this.initialized = true;
  }

  private releaseLock(): void {
    this.lock?.release();
    this.lock = undefined;
  }

  private async initCoders(): Promise<void> {
    const cfg = this.cfg;
    checkExcludeTokens(cfg.excludeTokens, (this.model as { vocabSize?: number }).vocabSize);
    this.hookpoints = resolveHooks(cfg, this.model);
    if (this.hookpoints.length === 0)
      throw new ConfigError(`no hookpoint of the model matches ${JSON.stringify(cfg.hookpoints.length ? cfg.hookpoints : cfg.layers)}`);
    const all = new Map(this.model.hookpoints().map((h) => [h.name, h.width]));
    for (const h of this.hookpoints) {
      const w = all.get(h) ?? this.model.width?.(h);
      if (w === undefined) throw new ConfigError(`hookpoint '${h}' is not a module of the model`);
      this.widths.set(h, w);
      if (cfg.sae.transcode && this.model.inputWidth) {
        const wi = this.model.inputWidth(h);
        if (wi !== w) throw new ConfigError(`--transcode: hookpoint '${h}' has input width ${wi} but output width ${w}; a transcoder needs equal widths`);
      }
    }
    // As sparsify: with no hookpoint patterns, layers default to all of them; both end up resolved in config.json.
    if (cfg.hookpoints.length === 0 && cfg.layers.length === 0) cfg.layers = [...Array(this.model.numLayers).keys()];
    cfg.hookpoints = [...this.hookpoints];

    const SparseCoder = (core as unknown as Record<string, any>).SparseCoder;
    if (!SparseCoder) throw new ConfigError('SparseCoder is not available in @sparsify/core');
    let finetuneDir: string | undefined;
    if (cfg.finetune) finetuneDir = await resolveLocalOrHub(cfg.finetune);
    const multi = cfg.initSeeds.length > 1;
    for (const hook of this.hookpoints) checkSizes(cfg.sae, hook, this.widths.get(hook)!);
    checkBatchSize(Math.min(cfg.batchSize, this.dataset.length), this.dataset.ctxLen, this.hookpoints.map((h) => this.widths.get(h)! * (cfg.sae.transcode ? 2 : 1)));
    for (const hook of this.hookpoints) {
      for (const seed of cfg.initSeeds) {
        const name = multi ? `${hook}/seed${seed}` : hook;
        const width = this.widths.get(hook)!;
        let coder: CoderLike;
        if (this.opts.initFrom) {
          const dir = join(this.opts.initFrom, name);
          coder = await maybe(SparseCoder.loadFromDisk(dir, { device: this.device }));
          this.checkCompatible(coder, width, `initial coder ${dir}`);
        } else if (finetuneDir) {
          const dir = join(finetuneDir, name);
          if (!existsSync(join(dir, 'sae.safetensors')))
            throw new FileFormatError(`--finetune ${cfg.finetune}: no sparse coder for '${name}' (${dir}/sae.safetensors)`);
          coder = await maybe(SparseCoder.loadFromDisk(dir, { device: this.device }));
          this.checkCompatible(coder, width, `finetune coder ${dir}`);
        } else {
          coder = await maybe(SparseCoder.create(width, { ...cfg.sae }, { seed, device: this.device }));
        }
        this.coders.push({ name, hook, seed, coder, counter: new DeadLatentCounter(coder.numLatents, cfg.deadFeatureThreshold) });
      }
    }
    for (const e of this.coders) this.bestLoss.set(e.name, Infinity);
    const first = this.coders[0];
    this.initialK = initialK(first.coder.numLatents, this.widths.get(first.hook)!);
    this.createOptimizers();
  }

  private checkCompatible(coder: CoderLike, width: number, what: string): void {
    const M = numLatentsOf(this.cfg.sae, width);
    if (coder.dIn !== width || coder.numLatents !== M)
      throw new ConfigError(`${what}: d_in ${coder.dIn} and ${coder.numLatents} latents, but this run needs d_in ${width} and ${M} latents`);
    if (coder.cfg.transcode !== this.cfg.sae.transcode || coder.cfg.skipConnection !== this.cfg.sae.skipConnection)
      throw new ConfigError(`${what}: transcode/skip_connection differ from this run's settings`);
    // Train with this run's settings (k, activation, ...), as sparsify loads weights into coders built from cfg.sae.
    Object.assign(coder.cfg, this.cfg.sae);
  }

  private createOptimizers(): void {
    for (const o of this.optimizers) (o as { dispose?: () => void }).dispose?.();
    const createOptimizer = (core as unknown as Record<string, any>).createOptimizer;
    if (!createOptimizer) throw new ConfigError('createOptimizer is not available in @sparsify/core');
    // One optimizer per coder: each gets the LR law of its own latent count, like sparsify's
    // one param group per SAE.
    this.optimizers = this.coders.map((e) =>
      createOptimizer(this.cfg.optimizer, [e.coder], { lr: defaultLr(this.cfg.optimizer, e.coder.numLatents, this.cfg.lr) }),
    );
  }

  /** Restores a checkpoint written by save() (weights, optimizer state, counters, step); checks it first (resume-check.ts). */
  async loadState(dir: string = this.runDir): Promise<void> {
    this.resuming = true;
    await this.init();
    try {
      await this.restore(dir);
    } catch (e) {
      this.releaseLock();
      throw e;
    }
  }

  private async restore(dir: string): Promise<void> {
    if (!recoverRunFolder(dir)) throw new FileFormatError(`${dir}: no complete checkpoint to resume from (missing ${STATE_FILE})`);
    const names = this.coders.map((e) => e.name);
    checkResumeConfig(dir, this.cfg);
    const state = readTrainerState(dir, { coders: names, totalBatches: this.totalBatches, gradAccSteps: this.cfg.gradAccSteps, optimizer: this.cfg.optimizer });
    const SparseCoder = (core as unknown as Record<string, any>).SparseCoder;
    const countersFile = join(dir, 'dead_counters.safetensors');
    const counters = loadInt64Safetensors(countersFile);
    for (const e of this.coders) {
      // Schedule-free runs keep the training iterate (y) apart from the saved average (x).
      const src = trainIterateDir(dir, e.name) ?? join(dir, e.name);
      const coder: CoderLike = await maybe(SparseCoder.loadFromDisk(src, { device: this.device }));
      this.checkCompatible(coder, this.widths.get(e.hook)!, src);
      e.coder.dispose?.();
      e.coder = coder;
      e.counter = new DeadLatentCounter(coder.numLatents, this.cfg.deadFeatureThreshold, checkCounters(countersFile, e.name, counters.get(e.name), coder.numLatents));
    }
    this.createOptimizers();
    for (let i = 0; i < this.optimizers.length; i++) {
      const base = join(dir, `optimizer_${i}`);
      const sd = loadStateDict(base);
      checkOptimizerState(`${base}.json`, sd, this.cfg.optimizer);
      try {
        await maybe(this.optimizers[i].loadStateDict(sd as never));
      } catch (e) {
        if (e instanceof ValueError) throw new FileFormatError(`${base}.safetensors: ${e.message}`);
        throw e;
      }
    }
    this.globalStep = state.global_step;
    this.optStep = state.step;
    this.tokensSeen = state.tokens;
    for (const [k, v] of Object.entries(state.best_loss)) this.bestLoss.set(k, v === null ? Infinity : v);
    if (this.opts.save !== false && dir === this.runDir) truncateMetrics(dir, state.step);
    this.resumed = true;
  }

  /** Writes the checkpoint into `dir` (default the run folder), atomically as a whole. */
  async save(dir: string = this.runDir, only?: CoderEntry[]): Promise<void> {
    const entries = only ?? this.coders;
    const isSignum = this.cfg.optimizer === 'signum';
    await replaceRunFolder(dir, async (tmp) => {
      for (const e of entries) {
        const i = this.coders.indexOf(e);
        const opt = this.optimizers[i];
        if (isSignum) {
          await maybe(opt.eval());
          await maybe(e.coder.saveToDisk(join(tmp, e.name)));
          await maybe(opt.train());
          await maybe(e.coder.saveToDisk(join(tmp, e.name, TRAIN_ITERATE)));
        } else {
          await maybe(e.coder.saveToDisk(join(tmp, e.name)));
        }
        const sd = opt.readStateDict ? await opt.readStateDict() : opt.stateDict();
        saveStateDict(join(tmp, `optimizer_${only ? entries.indexOf(e) : i}`), sd);
        // cuda: the tensors are copies read from the device.
        if (opt.onCuda) for (const t of (sd as { tensors: Map<string, Tensor> }).tensors.values()) t.dispose();
      }
      core.writeFileAtomic(join(tmp, 'config.json'), [trainConfigJson(this.cfg)]);
      saveInt64Safetensors(join(tmp, 'dead_counters.safetensors'), new Map(entries.map((e) => [e.name, e.counter.counts])));
      const best: Record<string, number | null> = {};
      for (const e of entries) {
        const b = this.bestLoss.get(e.name)!;
        best[e.name] = Number.isFinite(b) ? b : null;
      }
      const state = {
        format: STATE_FORMAT,
        global_step: this.globalStep,
        step: this.optStep,
        tokens: this.tokensSeen,
        k: this.kAt(this.globalStep),
        coders: entries.map((e) => e.name),
        optimizer: this.cfg.optimizer,
        best_loss: best,
      };
      core.writeFileAtomic(join(tmp, STATE_FILE), [pyJson(state)]);
    });
    if (isSignum) dropLegacyTrainIterate(dir);
    this.opts.onSave?.(dir, this.optStep);
    this.emit('save', dir, this.optStep);
  }

  private async saveBest(): Promise<void> {
    for (const e of this.coders) {
      const m = this.lastStepMetrics[e.name];
      if (!m) continue;
      const v = this.evaluator ? this.evaluator.bestValue(e.name, m.fvu) : m.fvu;
      if (v !== undefined && v < this.bestLoss.get(e.name)!) {
        this.bestLoss.set(e.name, v);
        // sparsify layout: best/{name}/ holds the state files, best/{name}/{name}/ the coder.
        await this.save(join(this.runDir, 'best', e.name), [e]);
      }
    }
  }

  private kAt(globalStep: number): number {
    return currentK(globalStep, this.cfg.kDecaySteps, this.initialK, this.cfg.sae.k);
  }

  private setK(k: number): void {
    for (const e of this.coders) (e.coder.cfg as { k: number }).k = k;
  }

  private lrMultiplier(step: number): number[] {
    // step = optimizer steps already taken; HF LambdaLR uses lambda(step) for the next update.
    switch (this.cfg.optimizer) {
      case 'adam':
        return [linearWarmupDecay(step, this.cfg.lrWarmupSteps, this.numBatches)];
      case 'muon':
        // Muon part: linear decay, no warmup; its Adam part: warmup + decay.
        return [linearWarmupDecay(step, 0, this.numBatches), linearWarmupDecay(step, this.cfg.lrWarmupSteps, this.numBatches)];
      case 'signum':
        return [1];
    }
  }

  private writeMetrics(record: Record<string, unknown>): void {
    if (this.opts.save === false) return;
    mkdirSync(this.runDir, { recursive: true });
    appendFileSync(join(this.runDir, METRICS_FILE), JSON.stringify(record) + '\n');
  }

  async fit(): Promise<FitResult> {
    await this.init();
    try {
      return await this.fitLoop();
    } finally {
      this.releaseLock();
    }
  }

  private async fitLoop(): Promise<FitResult> {
    const cfg = this.cfg;
    const B = cfg.batchSize;
    const T = this.dataset.ctxLen;
    const transcode = cfg.sae.transcode;
    const exclude = new Set(cfg.excludeTokens);
    const accDenom = cfg.gradAccSteps * cfg.microAccSteps;
    const started = performance.now();
    const doSave = this.opts.save !== false;

    // Per-step and per-log-window accumulators (sums and counts; reset after use).
    const stepSum = new Map<string, { fvu: number; auxk: number; mt: number; n: number }>();
    const logSum = new Map<string, number>();
    let logSteps = 0;
    let tokensInStep = 0;
    let stopped = false;
    const resetStep = () => {
      for (const e of this.coders) stepSum.set(e.name, { fvu: 0, auxk: 0, mt: 0, n: 0 });
    };
    resetStep();
    // didFire stays a host tensor on both devices (cuda coders set it from the step's [N,k] indices).
    for (const e of this.coders) e.didFire = Tensor.zeros([e.coder.numLatents], { dtype: 'int32' });

    for (let b = this.globalStep; b < this.totalBatches; b++) {
      const k = this.kAt(this.globalStep);
      this.setK(k);
      const lo = b * B;
      const hi = Math.min(lo + B, this.dataset.length);
      const idx = Array.from({ length: hi - lo }, (_, i) => lo + i);
      const tokens = await this.dataset.rows(idx);
      if (tokens.length !== idx.length * T) throw new ValueError(`dataset.rows returned ${tokens.length} tokens for ${idx.length} rows of ${T}`);
      let keep: Tensor | undefined;
      let nKeep = tokens.length;
      if (exclude.size > 0) {
        const kept: number[] = [];
        for (let i = 0; i < tokens.length; i++) if (!exclude.has(tokens[i])) kept.push(i);
        nKeep = kept.length;
        if (nKeep < tokens.length) keep = Tensor.from(Int32Array.from(kept), [nKeep]);
      }
      tokensInStep += nKeep;
      const tokT = Tensor.from(tokens, [idx.length, T]); // host token ids; the model puts them where it runs
      const out = await this.model.forward(tokT, { hookpoints: this.hookpoints, captureInputs: transcode });
      tokT.dispose();
      const firstBatch = this.globalStep === 0 && !this.resumed && !cfg.finetune;

      for (const hook of this.hookpoints) {
        let y = out.captured.get(hook);
        if (!y) throw new ValueError(`model.forward did not capture '${hook}'`);
        let x = y;
        if (transcode) {
          const xin = out.capturedInputs?.get(hook);
          if (!xin) throw new ValueError(`model.forward did not capture the input of '${hook}' (needed by --transcode)`);
          if (xin.shape[1] !== y.shape[1])
            throw new ConfigError(`--transcode: '${hook}' has input width ${xin.shape[1]} but output width ${y.shape[1]}; a transcoder needs equal widths`);
          x = xin;
        }
        const owned: Tensor[] = [];
        if (keep) {
          if (nKeep === 0) continue; // every token excluded: nothing to train on at this hookpoint
          y = await gatherRows(y, keep);
          owned.push(y);
          if (transcode) {
            x = await gatherRows(x, keep);
            owned.push(x);
          } else x = y;
        }
        const entries = this.coders.filter((e) => e.hook === hook);
        if (firstBatch)
          for (const e of entries) await withHookpointContext(e.name, async () => e.coder.initBiasesFromBatch(x, transcode ? y : undefined), (this.model as { path?: string }).path);
        const N = y.shape[0];
        const chunks = Math.min(cfg.microAccSteps, N);
        const onDevice = y.device === 'cuda' || x.device === 'cuda' || this.device === 'cuda';
        const tv = chunks > 1 ? (onDevice ? await core.native().cudaTotalVariance(y.handle) : await totalVariance(y)) : undefined;
        for (const e of entries) {
          const deadMask = cfg.auxkAlpha > 0 ? e.counter.deadMask() : undefined;
          for (let c = 0; c < chunks; c++) {
            const r0 = Math.floor((c * N) / chunks);
            const r1 = Math.floor(((c + 1) * N) / chunks);
            // cuda: micro-batches are row ranges of the (device) activations, sliced natively.
            const sliceHere = chunks > 1 && !onDevice;
            const xc = sliceHere ? rowSlice(x, r0, r1) : x;
            const yc = sliceHere && transcode ? rowSlice(y, r0, r1) : transcode ? y : undefined;
            const res = await withHookpointContext(e.name, () => e.coder.forwardBackward(xc, {
              y: yc,
              ...(chunks > 1 && onDevice ? { rows: [r0, r1] as [number, number] } : {}),
              deadMask,
              auxkAlpha: cfg.auxkAlpha,
              lossScale: 1 / accDenom,
              totalVariance: tv === undefined ? undefined : (tv * (r1 - r0)) / N,
              didFire: e.didFire,
            }), (this.model as { path?: string }).path);
            const s = stepSum.get(e.name)!;
            s.fvu += res.fvu;
            s.auxk += res.auxkLoss;
            s.mt += res.multiTopkFvu;
            s.n += 1;
          }
        }
        for (const t of owned) t.dispose();
      }
      for (const t of out.captured.values()) t.dispose();
      for (const t of out.capturedInputs?.values() ?? []) t.dispose();
      keep?.dispose();

      this.globalStep++;
      const substep = this.globalStep % cfg.gradAccSteps;
      if (substep === 0) {
        const mults = this.lrMultiplier(this.optStep);
        for (const opt of this.optimizers) await maybe(opt.step(mults[0], mults[1] ?? mults[0]));
        this.optStep++;
        this.tokensSeen += tokensInStep;
        const metrics: Record<string, CoderMetrics> = {};
        for (const e of this.coders) {
          const fired = e.didFire!.toInt32Array();
          e.counter.update(tokensInStep, fired);
          e.didFire!.dispose();
          e.didFire = Tensor.zeros([e.coder.numLatents], { dtype: 'int32' });
          const s = stepSum.get(e.name)!;
          const n = Math.max(1, s.n);
          metrics[e.name] = { fvu: s.fvu / n, auxk: s.auxk / n, multiTopkFvu: s.mt / n, deadPct: e.counter.deadFraction(), numDead: e.counter.numDead() };
        }
        tokensInStep = 0;
        resetStep();
        this.lastStepMetrics = metrics;
        const info: StepInfo = {
          step: this.optStep,
          totalSteps: this.totalSteps,
          batches: this.globalStep,
          totalBatches: this.totalBatches,
          tokens: this.tokensSeen,
          k,
          lr: this.optimizers.map((o) => o.lr * mults[0]),
          coders: metrics,
          elapsedSec: (performance.now() - started) / 1000,
        };
        this.writeMetrics({ step: info.step, batches: info.batches, tokens: info.tokens, k, lr: info.lr[0], elapsed_s: +info.elapsedSec.toFixed(3), ...flatMetrics(metrics) });
        if (this.evaluator?.due(this.optStep)) this.writeMetrics(await this.evaluator.stepRecord(this.optStep, this.coders));
        this.opts.onStep?.(info);
        this.emit('step', info);

        // Log window: averages over exactly the steps since the last log.
        for (const [key, v] of Object.entries(flatMetrics(metrics))) logSum.set(key, (logSum.get(key) ?? 0) + v);
        logSteps++;
        if (this.optStep % cfg.wandbLogFrequency === 0) {
          const values: Record<string, number> = { k };
          for (const [key, v] of logSum) values[key] = v / logSteps;
          const l: LogInfo = { step: this.optStep, values };
          this.opts.onLog?.(l);
          this.emit('log', l);
          logSum.clear();
          logSteps = 0;
        }
        if (doSave && this.optStep % cfg.saveEvery === 0 && this.globalStep < this.totalBatches) {
          await this.save();
          if (cfg.saveBest) await this.saveBest();
        }
      }
      if (this.stopRequested) {
        stopped = true;
        break;
      }
    }
    // As sparsify: gradients of a final incomplete accumulation window are dropped. A stop in
    // the middle of a window rewinds to the window's start so that resume re-processes it.
    if (stopped && this.globalStep % cfg.gradAccSteps !== 0) this.globalStep = this.optStep * cfg.gradAccSteps;
    for (const e of this.coders) {
      e.coder.zeroGrad();
      e.didFire?.dispose();
      e.didFire = undefined;
    }
    if (doSave) {
      await this.save();
      if (cfg.saveBest) await this.saveBest();
      if (this.evaluator) await this.evaluator.writeFinal(this.runDir, this.coders);
    }
    const result: FitResult = {
      steps: this.optStep,
      batches: this.globalStep,
      tokens: this.tokensSeen,
      stopped,
      runDir: this.runDir,
      final: this.lastStepMetrics,
      elapsedSec: (performance.now() - started) / 1000,
    };
    this.emit('end', result);
    return result;
  }
}

function flatMetrics(m: Record<string, CoderMetrics>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, v] of Object.entries(m)) {
    out[`fvu/${name}`] = v.fvu;
    out[`auxk/${name}`] = v.auxk;
    out[`multi_topk_fvu/${name}`] = v.multiTopkFvu;
    out[`dead_pct/${name}`] = v.deadPct;
  }
  return out;
}
