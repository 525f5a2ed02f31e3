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
import {
  checkComputeDtype,
  ConfigError,
  createOptimizer,
  FileFormatError,
  isSaeLensKind,
  numLatentsOf,
  pyJson,
  readOptimizerStateFile,
  resolveHookpoints,
  resolveLocalOrHub,
  saveOptimizerState,
  SparseCoder,
  Tensor,
  ValueError,
  writeFileAtomic,
  type ComputeDType,
  type Device,
  type LanguageModel,
  type Optimizer,
} from '@sparsify/core';
import { EventEmitter } from 'node:events';
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { TrainingEvaluator, type TrainingEvalOptions } from './eval/training-eval.js';
import type { EvalModel } from './eval/evaluate.js';
import { loadInt64Safetensors, saveInt64Safetensors } from './int64-safetensors.js';
import { METRICS_FILE, truncateMetrics } from './metrics-log.js';
import { checkCounters, checkOptimizerState, checkResumeConfig, readTrainerState, STATE_FORMAT } from './resume-check.js';
import { claimRunFolder } from './run-claim.js';
import { recoverRunFolder, replaceRunFolder, STATE_FILE } from './run-folder.js';
import type { RunLock } from './run-lock.js';
import { TRAIN_ITERATE, dropLegacyTrainIterate, trainIterateDir } from './train-iterate.js';
import { checkBatchSize, checkBatchTopKRows, checkDatasetShape, checkExcludeTokens, checkSizes, withHookpointContext } from './trainer-checks.js';
import { coderLr, currentK, initialK } from './schedules.js';
import { assertSupportedLossFn, defaultMaxGradNorm, trainConfigJson, validateTrainConfig, type RunConfig, type TrainConfig } from './train-config.js';
import { gatherRows, lrMultipliers } from './train-ops.js';
import { warmedUpCoefficient } from './saelens-schedules.js';
import { ACTIVATION_SCALER_FILE, estimateNormScales, readActivationScaler } from './norm-scale.js';

/** What the trainer reads from a dataset (InMemoryTokenDataset, TokenDataset, ...). */
export interface TokenDatasetLike {
  readonly length: number;
  readonly ctxLen: number;
  /** Token ids of the given rows, concatenated (rows × ctxLen). */
  rows(indices: readonly number[] | Int32Array): Int32Array | Promise<Int32Array>;
}

// ---- events ----

export interface CoderMetrics {
  fvu: number;
  auxk: number;
  multiTopkFvu: number;
  deadPct: number;
  numDead: number;
  /** With max_grad_norm: the coder's global gradient norm before clipping at this step. */
  gradNorm?: number;
  /** jumprelu: SAELens's pre-activation loss on the dead latents (metrics `pre_act_loss/<name>`). */
  preActLoss?: number;
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
  device?: Device;
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
  /**
   * The coders' encoder product: 'f32' (default) or 'bf16' (CPU, opt-in: bf16 forward of the
   * encoder GEMM, f32 backward, like autocast; docs/gemm.md). Not written to config.json.
   */
  computeDtype?: ComputeDType;
}

interface CoderEntry {
  name: string;
  hook: string;
  seed: number;
  coder: SparseCoder;
}

/** One batch of token rows: the ids, and (with exclude_tokens) the positions kept. */
interface Batch {
  tokens: Int32Array;
  rows: number;
  /** int32 positions of the tokens trained on; undefined when all are. */
  keep?: Tensor;
  nKeep: number;
}

/** What the model captured for one batch: per hookpoint the coder input x and target y. */
type Captured = { captured: Map<string, Tensor>; capturedInputs?: Map<string, Tensor> };

/** Sums over the batches of one optimizer step and over the steps of one log window. */
class StepTotals {
  perCoder = new Map<string, { fvu: number; auxk: number; mt: number; pre?: number; n: number }>();
  tokens = 0;
  logSum = new Map<string, number>();
  logSteps = 0;

  constructor(private readonly names: string[]) {
    this.resetStep();
  }

  add(name: string, r: { fvu: number; auxkLoss: number; multiTopkFvu: number; preActLoss?: number }): void {
    const s = this.perCoder.get(name)!;
    s.fvu += r.fvu;
    s.auxk += r.auxkLoss;
    s.mt += r.multiTopkFvu;
    if (r.preActLoss !== undefined) s.pre = (s.pre ?? 0) + r.preActLoss;
    s.n += 1;
  }

  resetStep(): void {
    for (const n of this.names) this.perCoder.set(n, { fvu: 0, auxk: 0, mt: 0, n: 0 });
    this.tokens = 0;
  }
}

function runDirOf(cfg: TrainConfig): string {
  return join(cfg.saveDir, cfg.runName || 'unnamed');
}

export class Trainer extends EventEmitter {
  readonly cfg: TrainConfig;
  readonly dataset: TokenDatasetLike;
  readonly model: LanguageModel;
  readonly device: Device;
  readonly runDir: string;
  hookpoints: string[] = [];
  widths = new Map<string, number>();
  coders: CoderEntry[] = [];
  optimizers: Optimizer[] = [];
  /** Batches processed (the index of the next batch). */
  globalStep = 0;
  /** Optimizer steps done. */
  optStep = 0;
  tokensSeen = 0;
  bestLoss = new Map<string, number>();
  private initialized = false;
  private resumed = false;
  private resuming = false;
  /** normalize_activations: the scale s of each hookpoint (estimated before training, or read on resume). */
  private normScale = new Map<string, number>();
  private lock?: RunLock;
  /** close() was called: the run folder is no longer this trainer's to write. */
  private closed = false;
  private fitting = false;
  private stopRequested = false;
  private readonly opts: TrainerOptions;
  private readonly computeDtype: ComputeDType;
  private initialK = 0;
  private lastStepMetrics: Record<string, CoderMetrics> = {};
  private readonly evaluator: TrainingEvaluator | undefined;

  constructor(cfg: TrainConfig | RunConfig, dataset: TokenDatasetLike, model: LanguageModel, opts: TrainerOptions = {}) {
    super();
    validateTrainConfig(cfg);
    assertSupportedLossFn(cfg);
    checkDatasetShape(dataset);
    this.cfg = structuredClone(cfg);
    this.cfg.maxGradNorm ??= defaultMaxGradNorm(this.cfg.sae);
    this.dataset = dataset;
    this.model = model;
    this.device = opts.device ?? 'cpu';
    this.computeDtype = checkComputeDtype(opts.computeDtype ?? 'f32', 'TrainerOptions.computeDtype');
    if (this.computeDtype === 'bf16' && this.device !== 'cpu')
      throw new ValueError(`TrainerOptions.computeDtype 'bf16' runs on the CPU only; the coders are on ${this.device}`);
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

  /**
   * Releases the run folder that init() / loadState() claimed (fit() releases it when it ends), so
   * that another Trainer may train into it. The coders stay usable; init / loadState / fit and saves
   * into the run folder are refused from then on (another trainer may own it). Idempotent.
   */
  close(): void {
    if (this.fitting) throw new ValueError('Trainer.close(): fit() is running; call requestStop() and await fit() first');
    this.closed = true;
    this.releaseLock();
  }

  private assertOpen(what: string): void {
    if (this.closed) throw new ValueError(`Trainer.${what}: this trainer was closed; its run folder ${this.runDir} may belong to another run now (create a new Trainer to continue it)`);
  }

  /**
   * Resolves hookpoints and widths and creates the coders (and loads finetune weights). With
   * saving on, it claims the run folder until fit() ends or close() is called.
   */
  async init(): Promise<void> {
    this.assertOpen('init()');
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
    checkExcludeTokens(cfg.excludeTokens, this.model.vocabSize);
    try {
      this.hookpoints = resolveHookpoints(this.model, { hookpoints: cfg.hookpoints, layers: cfg.layers, layerStride: cfg.layerStride });
    } catch (e) {
      if (e instanceof ValueError) throw new ConfigError(`${cfg.hookpoints.length ? '--hookpoints' : '--layers'}: ${e.message}`);
      throw e;
    }
    if (this.hookpoints.length === 0)
      throw new ConfigError(`no hookpoint of the model matches ${JSON.stringify(cfg.hookpoints.length ? cfg.hookpoints : cfg.layers)}`);
    const all = new Map(this.model.hookpoints().map((h) => [h.name, h.width]));
    for (const h of this.hookpoints) {
      const w = all.get(h) ?? this.model.width?.(h);
      if (w === undefined) throw new ConfigError(`hookpoint '${h}' is not a module of the model`);
      this.widths.set(h, w);
      if (cfg.sae.transcode) {
        const wi = this.model.inputWidth(h);
        if (wi !== w) throw new ConfigError(`--transcode: hookpoint '${h}' has input width ${wi} but output width ${w}; a transcoder needs equal widths`);
      }
    }
    // As sparsify: with no hookpoint patterns, layers default to all of them; both end up resolved in config.json.
    if (cfg.hookpoints.length === 0 && cfg.layers.length === 0) cfg.layers = [...Array(this.model.numLayers).keys()];
    cfg.hookpoints = [...this.hookpoints];

    let finetuneDir: string | undefined;
    if (cfg.finetune) finetuneDir = await resolveLocalOrHub(cfg.finetune);
    const multi = cfg.initSeeds.length > 1;
    for (const hook of this.hookpoints) checkSizes(cfg.sae, hook, this.widths.get(hook)!);
    checkBatchSize(Math.min(cfg.batchSize, this.dataset.length), this.dataset.ctxLen, this.hookpoints.map((h) => this.widths.get(h)! * (cfg.sae.transcode ? 2 : 1)));
    checkBatchTopKRows(cfg.sae, Math.min(cfg.batchSize, this.dataset.length), this.dataset.ctxLen, cfg.microAccSteps);
    for (const hook of this.hookpoints) {
      for (const seed of cfg.initSeeds) {
        const name = multi ? `${hook}/seed${seed}` : hook;
        const width = this.widths.get(hook)!;
        let coder: SparseCoder;
        if (this.opts.initFrom) {
          const dir = join(this.opts.initFrom, name);
          coder = await SparseCoder.loadFromDisk(dir, { device: this.device });
          this.checkCompatible(coder, width, `initial coder ${dir}`);
        } else if (finetuneDir) {
          const dir = join(finetuneDir, name);
          if (!existsSync(join(dir, 'sae.safetensors')))
            throw new FileFormatError(`--finetune ${cfg.finetune}: no sparse coder for '${name}' (${dir}/sae.safetensors)`);
          coder = await SparseCoder.loadFromDisk(dir, { device: this.device });
          this.checkCompatible(coder, width, `finetune coder ${dir}`);
        } else {
          coder = await SparseCoder.create(width, { ...cfg.sae }, { seed, device: this.device });
        }
        coder.computeDtype = this.computeDtype;
        await coder.loadDeadLatents(this.deadThresholdTokens());
        this.coders.push({ name, hook, seed, coder });
      }
    }
    for (const e of this.coders) this.bestLoss.set(e.name, Infinity);
    const first = this.coders[0];
    this.initialK = initialK(first.coder.numLatents, this.widths.get(first.hook)!);
    this.createOptimizers();
  }

  /**
   * Tokens without firing after which a latent is dead: dead_feature_threshold, or SAELens's
   * dead_feature_window (optimizer steps) times the tokens of a full optimizer step.
   */
  private deadThresholdTokens(): number {
    const w = this.cfg.deadFeatureWindow;
    return w === null ? this.cfg.deadFeatureThreshold : w * this.cfg.batchSize * this.dataset.ctxLen * this.cfg.gradAccSteps;
  }

  private checkCompatible(coder: SparseCoder, width: number, what: string): void {
    const M = numLatentsOf(this.cfg.sae, width);
    if (coder.dIn !== width || coder.numLatents !== M)
      throw new ConfigError(`${what}: d_in ${coder.dIn} and ${coder.numLatents} latents, but this run needs d_in ${width} and ${M} latents`);
    if (coder.cfg.transcode !== this.cfg.sae.transcode || coder.cfg.skipConnection !== this.cfg.sae.skipConnection)
      throw new ConfigError(`${what}: transcode/skip_connection differ from this run's settings`);
    if (coder.cfg.activation !== this.cfg.sae.activation && (isSaeLensKind(coder.cfg.activation) || isSaeLensKind(this.cfg.sae.activation)))
      throw new ConfigError(`${what}: activation "${coder.cfg.activation}", but this run trains --activation ${this.cfg.sae.activation}`);
    // Train with this run's settings (k, activation, ...), as sparsify loads weights into coders built from cfg.sae.
    Object.assign(coder.cfg, this.cfg.sae);
  }

  private createOptimizers(): void {
    for (const o of this.optimizers) o.dispose();
    // One optimizer per coder: each gets the LR law of its own latent count, like sparsify's
    // one param group per SAE.
    this.optimizers = this.coders.map((e) =>
      createOptimizer(this.cfg.optimizer, [e.coder], { lr: coderLr(this.cfg.lr, this.cfg.optimizer, e.coder.numLatents), maxGradNorm: this.cfg.maxGradNorm ?? 0 }),
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
    const countersFile = join(dir, 'dead_counters.safetensors');
    const counters = loadInt64Safetensors(countersFile);
    const scales = this.cfg.normalizeActivations !== 'none' ? readActivationScaler(join(dir, ACTIVATION_SCALER_FILE), this.hookpoints) : undefined;
    for (const e of this.coders) {
      // Schedule-free and normalize_activations runs keep the training iterate (y; the coder on
      // s·x) apart from the saved coder (the average x; s folded in).
      const iterate = trainIterateDir(dir, e.name);
      const src = iterate ?? join(dir, e.name);
      let coder = await SparseCoder.loadFromDisk(src, { device: this.device });
      if (scales && !iterate) {
        // A checkpoint without the training iterate: unfold the saved coder (exact up to rounding).
        const raw = coder;
        coder = await raw.foldedCopy(1 / scales.get(e.hook)!);
        raw.dispose();
      }
      this.checkCompatible(coder, this.widths.get(e.hook)!, src);
      coder.computeDtype = this.computeDtype;
      e.coder.dispose();
      e.coder = coder;
      await coder.loadDeadLatents(this.deadThresholdTokens(), checkCounters(countersFile, e.name, counters.get(e.name), coder.numLatents));
    }
    this.createOptimizers();
    for (let i = 0; i < this.optimizers.length; i++) {
      const base = join(dir, `optimizer_${i}`);
      const sd = readOptimizerStateFile(base);
      checkOptimizerState(`${base}.json`, sd, this.cfg.optimizer);
      try {
        this.optimizers[i].loadStateDict(sd as never);
      } catch (e) {
        if (e instanceof ValueError) throw new FileFormatError(`${base}.safetensors: ${e.message}`);
        throw e;
      }
    }
    if (scales) this.normScale = scales;
    this.globalStep = state.global_step;
    this.optStep = state.step;
    this.tokensSeen = state.tokens;
    for (const [k, v] of Object.entries(state.best_loss)) this.bestLoss.set(k, v === null ? Infinity : v);
    if (this.opts.save !== false && dir === this.runDir) truncateMetrics(dir, state.step);
    this.resumed = true;
  }

  /** Writes the checkpoint into `dir` (default the run folder), atomically as a whole. */
  async save(dir: string = this.runDir, only?: CoderEntry[]): Promise<void> {
    if (resolve(dir) === resolve(this.runDir)) this.assertOpen('save()');
    const entries = only ?? this.coders;
    const isSignum = this.cfg.optimizer === 'signum';
    await replaceRunFolder(dir, async (tmp) => {
      for (const e of entries) {
        const i = this.coders.indexOf(e);
        const opt = this.optimizers[i];
        const s = this.normScale.get(e.hook);
        const fold = { activationScale: s };
        // The training iterate (resume's source) is saved as trained: unfolded, signum's y.
        if (isSignum) {
          await opt.eval();
          await e.coder.saveToDisk(join(tmp, e.name), fold);
          await opt.train();
          await e.coder.saveToDisk(join(tmp, e.name, TRAIN_ITERATE));
        } else {
          await e.coder.saveToDisk(join(tmp, e.name), fold);
          if (s !== undefined) await e.coder.saveToDisk(join(tmp, e.name, TRAIN_ITERATE));
        }
        const sd = await opt.readStateDict(); // copies, on every device
        try {
          saveOptimizerState(join(tmp, `optimizer_${only ? entries.indexOf(e) : i}`), sd);
        } finally {
          for (const t of sd.tensors.values()) t.dispose();
        }
      }
      writeFileAtomic(join(tmp, 'config.json'), [trainConfigJson(this.cfg)]);
      if (this.normScale.size) writeFileAtomic(join(tmp, ACTIVATION_SCALER_FILE), [pyJson(Object.fromEntries(this.normScale))]);
      const counts = new Map<string, Float64Array>();
      for (const e of entries) counts.set(e.name, await e.coder.readDeadLatents());
      saveInt64Safetensors(join(tmp, 'dead_counters.safetensors'), counts);
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
      writeFileAtomic(join(tmp, STATE_FILE), [pyJson(state)]);
    });
    if (isSignum || this.normScale.size) dropLegacyTrainIterate(dir);
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

  private writeMetrics(record: Record<string, unknown>): void {
    if (this.opts.save === false) return;
    mkdirSync(this.runDir, { recursive: true });
    appendFileSync(join(this.runDir, METRICS_FILE), JSON.stringify(record) + '\n');
  }

  /**
   * sparsify's training loop: per batch the model forward, then the coder steps of every
   * hookpoint; every grad_acc_steps batches the optimizer steps, the bookkeeping (dead latents,
   * metrics, logs) and the periodic saves; at the end a final save.
   */
  async fit(): Promise<FitResult> {
    await this.init();
    this.fitting = true;
    try {
      return await this.fitLoop();
    } finally {
      this.fitting = false;
      this.releaseLock();
    }
  }

  private async fitLoop(): Promise<FitResult> {
    const started = performance.now();
    if (this.cfg.normalizeActivations !== 'none' && this.normScale.size === 0) await this.prepareNormScale();
    const totals = new StepTotals(this.coders.map((e) => e.name));
    // The coders record the latents their steps select (on their device); start from none.
    for (const e of this.coders) await e.coder.takeFiredLatents();
    let stopped = false;
    for (let b = this.globalStep; b < this.totalBatches; b++) {
      const k = this.kAt(this.globalStep);
      this.setK(k);
      const batch = await this.readBatch(b);
      totals.tokens += batch.nKeep;
      const acts = await this.modelForward(batch);
      const firstBatch = this.globalStep === 0 && !this.resumed && !this.cfg.finetune;
      try {
        for (const hook of this.hookpoints) await this.coderSteps(hook, acts, batch, firstBatch, totals);
      } finally {
        for (const t of acts.captured.values()) t.dispose();
        for (const t of acts.capturedInputs?.values() ?? []) t.dispose();
        batch.keep?.dispose();
      }
      this.globalStep++;
      if (this.globalStep % this.cfg.gradAccSteps === 0) {
        const mults = await this.optimizerSteps();
        const metrics = await this.bookkeeping(totals);
        await this.report(k, mults, metrics, totals, started);
        if (this.opts.save !== false && this.optStep % this.cfg.saveEvery === 0 && this.globalStep < this.totalBatches) await this.saveAll();
      }
      if (this.stopRequested) {
        stopped = true;
        break;
      }
    }
    return this.finish(stopped, started);
  }

  /**
   * normalize_activations (a fresh, fine-tuned or init_from run): s per hookpoint from a separate
   * read pass over the first n_batches_for_norm_estimate batches (the training then reads them
   * again: deterministic, and resume reads s back). Coders loaded from disk read raw x: they are
   * unfolded to read s·x, the same function, before training starts.
   */
  private async prepareNormScale(): Promise<void> {
    const n = Math.min(this.cfg.nBatchesForNormEstimate, this.totalBatches);
    this.normScale = await estimateNormScales(this.hookpoints, n, async (b) => {
      const batch = await this.readBatch(b);
      const acts = await this.modelForward(batch);
      return { acts, keep: batch.keep, nKeep: batch.nKeep };
    });
    if (!this.cfg.finetune && !this.opts.initFrom) return;
    for (const e of this.coders) {
      const raw = e.coder;
      e.coder = await raw.foldedCopy(1 / this.normScale.get(e.hook)!);
      raw.dispose();
      await e.coder.loadDeadLatents(this.cfg.deadFeatureThreshold);
    }
    this.createOptimizers();
  }

  /** Token rows of batch `b` and, with exclude_tokens, the positions kept. */
  private async readBatch(b: number): Promise<Batch> {
    const T = this.dataset.ctxLen;
    const lo = b * this.cfg.batchSize;
    const hi = Math.min(lo + this.cfg.batchSize, this.dataset.length);
    const idx = Array.from({ length: hi - lo }, (_, i) => lo + i);
    const tokens = await this.dataset.rows(idx);
    if (tokens.length !== idx.length * T) throw new ValueError(`dataset.rows returned ${tokens.length} tokens for ${idx.length} rows of ${T}`);
    const exclude = new Set(this.cfg.excludeTokens);
    if (exclude.size === 0) return { tokens, rows: idx.length, nKeep: tokens.length };
    const kept: number[] = [];
    for (let i = 0; i < tokens.length; i++) if (!exclude.has(tokens[i])) kept.push(i);
    const keep = kept.length < tokens.length ? Tensor.from(Int32Array.from(kept), [kept.length]) : undefined;
    return { tokens, rows: idx.length, keep, nKeep: kept.length };
  }

  /** The model forward of one batch, capturing every hookpoint (and its input for transcoders). */
  private async modelForward(batch: Batch): Promise<Captured> {
    const tokT = Tensor.from(batch.tokens, [batch.rows, this.dataset.ctxLen]); // host token ids; the model puts them where it runs
    try {
      return await this.model.forward(tokT, { hookpoints: this.hookpoints, captureInputs: this.cfg.sae.transcode });
    } finally {
      tokT.dispose();
    }
  }

  /** The forward/backward of every coder of `hook` on this batch (micro-batched as row ranges). */
  private async coderSteps(hook: string, acts: Captured, batch: Batch, firstBatch: boolean, totals: StepTotals): Promise<void> {
    const cfg = this.cfg;
    const transcode = cfg.sae.transcode;
    let y = acts.captured.get(hook);
    if (!y) throw new ValueError(`model.forward did not capture '${hook}'`);
    let x = y;
    if (transcode) {
      const xin = acts.capturedInputs?.get(hook);
      if (!xin) throw new ValueError(`model.forward did not capture the input of '${hook}' (needed by --transcode)`);
      if (xin.shape[1] !== y.shape[1])
        throw new ConfigError(`--transcode: '${hook}' has input width ${xin.shape[1]} but output width ${y.shape[1]}; a transcoder needs equal widths`);
      x = xin;
    }
    if (batch.keep && batch.nKeep === 0) return; // every token excluded: nothing to train on at this hookpoint
    const owned: Tensor[] = [];
    try {
      if (batch.keep) {
        y = await gatherRows(y, batch.keep);
        owned.push(y);
        if (transcode) {
          x = await gatherRows(x, batch.keep);
          owned.push(x);
        } else x = y;
      }
      if (cfg.normalizeActivations === 'expected_average_only_in') {
        // SAELens: the coders see s·x, s = sqrt(d_in) / E||x|| (prepareNormScale).
        if (x.device !== 'cpu') throw new ConfigError('--normalize_activations expected_average_only_in: CPU activations only for now');
        const scale = this.normScale.get(hook);
        if (scale === undefined) throw new ValueError(`normalize_activations: no scale for '${hook}'`);
        x = y = Tensor.from(x.toFloat32Array().map((v) => v * scale), x.shape);
        owned.push(x);
      }
      const entries = this.coders.filter((e) => e.hook === hook);
      if (firstBatch) for (const e of entries) await withHookpointContext(e.name, () => e.coder.initBiasesFromBatch(x, transcode ? y : undefined), this.model.path);
      const N = y.shape[0];
      const chunks = Math.min(cfg.microAccSteps, N);
      for (const e of entries) {
        for (let c = 0; c < chunks; c++) {
          const r0 = Math.floor((c * N) / chunks);
          const r1 = Math.floor(((c + 1) * N) / chunks);
          const res = await withHookpointContext(e.name, () => e.coder.forwardBackward(x, {
            y: transcode ? y : undefined,
            // Micro-batches: row ranges, each normalised by the whole batch's variance (its share).
            ...(chunks > 1 ? { rows: [r0, r1] as [number, number], batchVariance: true } : {}),
            // AuxK's dead latents: the coder's own counters, on its device.
            deadFromCounters: true,
            auxkAlpha: cfg.auxkAlpha,
            lossScale: 1 / (cfg.gradAccSteps * cfg.microAccSteps),
            trackFired: true,
            // SAELens kinds: the sparsity coefficients at this optimizer step (SAELens's warm-up law).
            l1Coefficient: warmedUpCoefficient(cfg.l1Coefficient, this.optStep, cfg.l1WarmUpSteps),
            l0Coefficient: warmedUpCoefficient(cfg.l0Coefficient, this.optStep, cfg.l0WarmUpSteps),
            auxLossCoefficient: cfg.auxLossCoefficient,
            preActLossCoefficient: cfg.preActLossCoefficient ?? 0,
          }), this.model.path);
          totals.add(e.name, res);
        }
      }
    } finally {
      for (const t of owned) t.dispose();
    }
  }

  /** One optimizer step per coder at this step's lr multipliers (returned). */
  private async optimizerSteps(): Promise<number[]> {
    const mults = lrMultipliers(this.cfg, this.optStep, this.numBatches);
    for (const opt of this.optimizers) await opt.step(mults[0], mults[1] ?? mults[0]); // clipping inside, per coder
    this.optStep++;
    return mults;
  }

  /** Dead-latent counters and this step's averaged metrics per coder (the step totals restart). */
  private async bookkeeping(totals: StepTotals): Promise<Record<string, CoderMetrics>> {
    this.tokensSeen += totals.tokens;
    const metrics: Record<string, CoderMetrics> = {};
    for (const [i, e] of this.coders.entries()) {
      const numDead = await e.coder.updateDeadLatents(totals.tokens);
      const s = totals.perCoder.get(e.name)!;
      const n = Math.max(1, s.n);
      metrics[e.name] = {
        fvu: s.fvu / n, auxk: s.auxk / n, multiTopkFvu: s.mt / n, deadPct: numDead / e.coder.numLatents, numDead,
        ...(s.pre !== undefined ? { preActLoss: s.pre / n } : {}),
      };
      const gradNorm = this.optimizers[i].lastGradNorms[0];
      if (gradNorm !== undefined) metrics[e.name].gradNorm = gradNorm;
    }
    totals.resetStep();
    this.lastStepMetrics = metrics;
    return metrics;
  }

  /** metrics.jsonl, the step event, and the log event at the end of each log window. */
  private async report(k: number, mults: number[], metrics: Record<string, CoderMetrics>, totals: StepTotals, started: number): Promise<void> {
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
    if (this.evaluator?.due(this.optStep)) {
      const ev = await this.evalCoders();
      try {
        this.writeMetrics(await this.evaluator.stepRecord(this.optStep, ev));
      } finally {
        ev.dispose();
      }
    }
    this.opts.onStep?.(info);
    this.emit('step', info);
    // Log window: averages over exactly the steps since the last log.
    for (const [key, v] of Object.entries(flatMetrics(metrics))) totals.logSum.set(key, (totals.logSum.get(key) ?? 0) + v);
    totals.logSteps++;
    if (this.optStep % this.cfg.wandbLogFrequency === 0) {
      const values: Record<string, number> = { k };
      for (const [key, v] of totals.logSum) values[key] = v / totals.logSteps;
      const l: LogInfo = { step: this.optStep, values };
      this.opts.onLog?.(l);
      this.emit('log', l);
      totals.logSum.clear();
      totals.logSteps = 0;
    }
  }

  /**
   * The coders as evaluation splices them into the model: in raw units like the saved ones
   * (normalize_activations: folded copies, disposed by the caller), else the training coders.
   */
  private async evalCoders(): Promise<{ name: string; coder: SparseCoder }[] & { dispose(): void }> {
    const copies: SparseCoder[] = [];
    const out = [] as unknown as { name: string; coder: SparseCoder }[] & { dispose(): void };
    out.dispose = () => {
      for (const c of copies) c.dispose();
    };
    try {
      for (const e of this.coders) {
        const s = this.normScale.get(e.hook);
        let coder = e.coder;
        if (s !== undefined) copies.push((coder = await e.coder.foldedCopy(s)));
        out.push({ name: e.name, coder });
      }
    } catch (err) {
      out.dispose();
      throw err;
    }
    return out;
  }

  /** The run folder checkpoint, and best/ when save_best. */
  private async saveAll(): Promise<void> {
    await this.save();
    if (this.cfg.saveBest) await this.saveBest();
  }

  /** After the loop: drop an incomplete accumulation window, final save, the end event. */
  private async finish(stopped: boolean, started: number): Promise<FitResult> {
    const cfg = this.cfg;
    // As sparsify: gradients of a final incomplete accumulation window are dropped. A stop in
    // the middle of a window rewinds to the window's start so that resume re-processes it.
    if (stopped && this.globalStep % cfg.gradAccSteps !== 0) this.globalStep = this.optStep * cfg.gradAccSteps;
    for (const e of this.coders) e.coder.zeroGrad();
    if (this.opts.save !== false) {
      await this.saveAll();
      if (this.evaluator) {
        const ev = await this.evalCoders();
        try {
          await this.evaluator.writeFinal(this.runDir, ev);
        } finally {
          ev.dispose();
        }
      }
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
    if (v.gradNorm !== undefined) out[`grad_norm/${name}`] = v.gradNorm;
    if (v.preActLoss !== undefined) out[`pre_act_loss/${name}`] = v.preActLoss;
  }
  return out;
}
