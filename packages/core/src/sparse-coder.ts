/**
 * SparseCoder (alias Sae): sparsify's TopK / GroupMax sparse autoencoder or transcoder, with
 * every heavy operation one native call (see docs/sae.md).
 *
 * Parameters (sparsify's safetensors names): encoder.weight [M,D], encoder.bias [M],
 * W_dec [M,D] (row = latent; absent with decoder: false), b_dec [D], W_skip [D,D] (skip_connection).
 *
 * The parameters, gradients and optimizer moments live in the coder's CoderState on its device
 * (backend/coder-state.ts); this class holds the config and the sparsify semantics, the same for
 * every device. Host parameter tensors stay the source of truth for saving: on 'cuda', params()
 * is a host snapshot, refreshed by `await coder.syncToHost()` (saveToDisk does it).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import type { CoderState, ForwardResult, StepLosses } from './backend/coder-state.js';
import { checkDevice, createCoderState } from './backend/create-coder-state.js';
import { KindState, kindEncode, kindForward, kindForwardBackward, kindInitialDecoder, kindOf, kindProblem, type KindCoefficients } from './backend/kind-step.js';
import { foldActivationScale } from './activation-fold.js';
import { checkTensorArg, checkTotalVariance } from './coder-args.js';
import { listCoderDirs, readCoderDir, writeCoderDir } from './checkpoint.js';
import { CODER_PARAM_NAMES, coderParamShapes, type CoderParamName } from './coder-params.js';
import { checkComputeDtype, type ComputeDType } from './compute-dtype.js';
import { coderSpecProblem, numLatentsOf, sparseCoderConfig, type SparseCoderConfig } from './config.js';
import { DisposedError, FileFormatError, ShapeError, ValueError } from './errors.js';
import { snapshotDownload } from './hub.js';
import { initEncoderWeight, normalizeRows } from './init.js';
import { naturalSort } from './natsort.js';
import type { CoderWeights } from './ops/sae.js';
import { allocating, checkCoderSize, coderParamBytes } from './size-limits.js';
import { assertFiniteValues } from './finite-values.js';
import { checkNoOtherFormat, isSaeLensDir, readSaeLensDir, saeLensToSparsify, writeSparsifyAsSaeLens, type SaeLensLoadOptions, type SaeLensSaveOptions } from './saelens/format.js';
import { writeKindAsSaeLens } from './saelens/kind-export.js';
import { saeLensToKind } from './saelens/kind-import.js';
import type { SparseLatents } from './ops/threshold.js';
import { Tensor, type Device } from './tensor.js';

export { CODER_PARAM_NAMES, type CoderParamName } from './coder-params.js';
export type { ForwardResult, StepLosses } from './backend/coder-state.js';

export interface CoderLoadOptions {
  device?: Device;
  /** false: encoder only (W_dec neither required nor loaded), as sparsify's decoder=False. */
  decoder?: boolean;
}

export interface ForwardBackwardOptions extends KindCoefficients {
  /** Target (transcoders: the module output). Default: x. */
  y?: Tensor;
  /** Dead latents (nonzero = dead) for the AuxK loss. */
  deadMask?: Tensor | Uint8Array;
  /** AuxK's dead latents are the coder's own dead-latent counters (updateDeadLatents), on its device. Not with deadMask. */
  deadFromCounters?: boolean;
  auxkAlpha: number;
  /** Gradients added are lossScale * d(loss) (e.g. 1 / grad_acc_steps). Default 1. */
  lossScale?: number;
  /** Normaliser of FVU / AuxK / Multi-TopK instead of this batch's variance (PR #138). */
  totalVariance?: number;
  /** int32 [M]: entries of the latents selected in this batch are set to 1 (a host tensor also on cuda). */
  didFire?: Tensor;
  /**
   * Record the selected latents in the coder's own state instead (on its device); read and clear
   * them with takeFiredLatents(). Not together with didFire.
   */
  trackFired?: boolean;
  /** Train on rows [begin, end) of x (and y) only: micro-batches as views, also of device tensors. */
  rows?: [number, number];
  /**
   * With rows (and no totalVariance): normalise by the variance of the whole batch (y, else x)
   * times the rows' share of it, computed on the coder's device (PR #138's micro-batches).
   */
  batchVariance?: boolean;
  /** This call's compute dtype instead of `coder.computeDtype` (the backward stays f32). */
  computeDtype?: ComputeDType;
}

export class SparseCoder implements Disposable {
  /** The config; `cfg.k` may be changed between calls (sparsify's k schedule mutates it too). */
  readonly cfg: SparseCoderConfig;
  readonly dIn: number;
  readonly numLatents: number;
  readonly device: Device;
  /** @internal The coder's resident state on its device (parameters, gradients, optimizer moments). */
  readonly state: CoderState;
  /** SAELens kinds (relu / jumprelu / batchtopk): what is not an optimizer parameter (kind-step.ts). */
  private readonly kind: KindState | undefined;
  /** dead_feature_threshold as last given to loadDeadLatents (the state's default until then). */
  private deadThreshold = Infinity;
  /** The kinds' dead mask (counters > deadThreshold), read once per counter update. */
  private deadFromCountersCache: Int32Array | undefined;
  private dtype: ComputeDType = 'f32';

  private constructor(cfg: SparseCoderConfig, dIn: number, state: CoderState, kind: KindState | undefined) {
    this.cfg = cfg;
    this.dIn = dIn;
    this.numLatents = numLatentsOf(cfg, dIn);
    this.state = state;
    this.device = state.device;
    this.kind = kind;
  }

  /** A coder over host f32 parameters `t` (owned from here on, disposed on failure). */
  private static async make(cfg: SparseCoderConfig, dIn: number, t: Map<CoderParamName, Tensor>, device: Device): Promise<SparseCoder> {
    let state: CoderState | undefined;
    let kind: KindState | undefined;
    try {
      const M = numLatentsOf(cfg, dIn);
      const name = kindOf(cfg);
      const problem = coderSpecProblem(cfg, M) ?? (name ? kindProblem(cfg, M) : undefined);
      if (problem) throw new ValueError(problem);
      if (name) kind = KindState.fromParams(name, M, t);
      state = await createCoderState(device, cfg, t);
    } finally {
      if (!state) for (const x of t.values()) x.dispose();
    }
    return new SparseCoder(cfg, dIn, state, kind);
  }

  /**
   * A fresh coder, initialised like sparsify: encoder.weight ~ U(±1/sqrt(d_in)) from our seeded
   * RNG (default seed 0), encoder.bias 0, W_dec = normalised encoder rows (SAE) or 0
   * (transcoder), b_dec 0, W_skip 0.
   */
  static async create(
    dIn: number,
    cfg: Partial<SparseCoderConfig> = {},
    opts: { seed?: number; device?: Device; decoder?: boolean } = {},
  ): Promise<SparseCoder> {
    if (!Number.isInteger(dIn) || dIn < 1) throw new ValueError(`SparseCoder.create: dIn must be a positive integer, got ${dIn}`);
    const full = sparseCoderConfig(cfg);
    const device = checkDevice(opts.device, 'SparseCoder');
    const M = numLatentsOf(full, dIn);
    const size = { numLatents: M, dIn, skipConnection: full.skipConnection };
    checkCoderSize(size, 'SparseCoder.create');
    const enc = allocating(coderParamBytes(size), 'SparseCoder.create', () => initEncoderWeight(M, dIn, opts.seed ?? 0));
    const t = new Map<CoderParamName, Tensor>();
    if (kindOf(full)) {
      // SAELens's init: W_dec rows at norm 0.1, W_enc = W_decᵀ (kind-step.ts).
      const dec = kindInitialDecoder(enc, M, dIn);
      for (const [name, shape] of coderParamShapes(full, dIn, M, { decoder: opts.decoder })) {
        if (name === 'encoder.weight') t.set(name, Tensor.from(dec.slice(), shape));
        else if (name === 'W_dec') t.set(name, Tensor.from(dec, shape));
        else if (name === 'log_threshold') t.set(name, Tensor.from(new Float32Array(M).fill(Math.log(full.jumpreluInitThreshold)), shape));
        else t.set(name, Tensor.zeros(shape));
      }
      return SparseCoder.make(full, dIn, t, device);
    }
    for (const [name, shape] of coderParamShapes(full, dIn, M, { decoder: opts.decoder })) {
      if (name === 'encoder.weight') t.set(name, Tensor.from(enc, shape));
      else if (name === 'W_dec' && !full.transcode) t.set(name, Tensor.from(full.normalizeDecoder ? normalizeRows(enc, M, dIn) : enc.slice(), shape));
      else t.set(name, Tensor.zeros(shape));
    }
    return SparseCoder.make(full, dIn, t, device);
  }

  /**
   * Loads `<dir>/cfg.json` + `<dir>/sae.safetensors` (F32/BF16/F16 files; computes in f32), or a
   * SAELens folder (`sae_weights.safetensors`, see saelens/format.ts): topk as TopK, standard /
   * jumprelu / batchtopk as the trainable SAELens kinds (gated: loadSaeLensCoder only).
   */
  static async loadFromDisk(dir: string, opts: CoderLoadOptions & SaeLensLoadOptions = {}): Promise<SparseCoder> {
    const device = checkDevice(opts.device, 'SparseCoder');
    if (isSaeLensDir(dir)) {
      const folder = await readSaeLensDir(dir);
      // TopK as sparsify's TopK; standard / jumprelu / batchtopk as the SAELens kinds (saelens/kind-import.ts).
      const p = folder.cfg.architecture === 'topk' ? saeLensToSparsify(folder, opts, dir) : saeLensToKind(folder, opts, dir);
      return SparseCoder.fromParams(p.cfg, p.dIn, p.tensors, device);
    }
    const files = readCoderDir(dir, { decoder: opts.decoder ?? true });
    const t = new Map<CoderParamName, Tensor>();
    try {
      for (const name of CODER_PARAM_NAMES) {
        const src = files.tensors.get(name);
        if (!src) continue;
        const f = await src.to('float32'); // always a private heap copy (files are mapped read-only)
        t.set(name, f);
        if (name === 'log_threshold' || name === 'topk_threshold') assertFiniteValues(join(dir, 'sae.safetensors'), name, f.toFloat32Array());
      }
    } catch (e) {
      for (const x of t.values()) x.dispose();
      throw e;
    } finally {
      for (const src of files.tensors.values()) src.dispose();
    }
    return SparseCoder.make(files.cfg, files.dIn, t, device);
  }

  /** @internal A coder owning these f32 parameter tensors (sparsify names). */
  static async fromParams(cfg: SparseCoderConfig, dIn: number, tensors: Map<string, Tensor>, device: Device = 'cpu'): Promise<SparseCoder> {
    return SparseCoder.make(cfg, dIn, tensors as Map<CoderParamName, Tensor>, device);
  }

  /** sparsify's load_from_hub: `repo/<hookpoint>/` when a hookpoint is given, else the repo root. */
  static async loadFromHub(
    repo: string,
    opts: CoderLoadOptions & { hookpoint?: string; revision?: string; cacheDir?: string } = {},
  ): Promise<SparseCoder> {
    const snap = await snapshotDownload(repo, {
      revision: opts.revision,
      cacheDir: opts.cacheDir,
      allowPatterns: opts.hookpoint ? [`${opts.hookpoint}/*`] : undefined,
    });
    const dir = opts.hookpoint ? join(snap, opts.hookpoint) : snap;
    if (!opts.hookpoint && !existsSync(join(dir, 'cfg.json')))
      throw new FileFormatError(`${repo}: no cfg.json at the repo root; try specifying a hookpoint (layer)`);
    return SparseCoder.loadFromDisk(dir, opts);
  }

  /**
   * sparsify's load_many: every coder folder of a local dir (local: true) or hub repo, keyed by
   * folder name in natural order; `layers` picks folders, `pattern` filters names (fnmatch).
   * Folders without cfg.json are skipped (upstream crashes on them).
   */
  static async loadMany(
    repoOrDir: string,
    opts: CoderLoadOptions & { local?: boolean; layers?: string[]; pattern?: string; revision?: string; cacheDir?: string } = {},
  ): Promise<Map<string, SparseCoder>> {
    const root = opts.local
      ? repoOrDir
      : await snapshotDownload(repoOrDir, {
          revision: opts.revision,
          cacheDir: opts.cacheDir,
          allowPatterns: opts.pattern ? [`${opts.pattern}/*`] : opts.layers ? opts.layers.map((l) => `${l}/*`) : undefined,
        });
    const names = opts.layers ? naturalSort(opts.layers) : listCoderDirs(root, opts.pattern);
    const out = new Map<string, SparseCoder>();
    try {
      for (const name of names) out.set(name, await SparseCoder.loadFromDisk(join(root, name), opts));
    } catch (e) {
      for (const c of out.values()) c.dispose();
      throw e;
    }
    return out;
  }

  /**
   * A new coder on the same device that reads x as this one reads s·x: the activation scale
   * folded into copies of the parameters (activation-fold.ts; s = 1/t undoes a fold by t). The
   * dead-latent counters start fresh (loadDeadLatents); this coder is unchanged.
   */
  async foldedCopy(s: number): Promise<SparseCoder> {
    this.alive();
    await this.state.syncToHost();
    const buffers = this.kind?.buffers() ?? new Map<string, Tensor>();
    let folded: Map<string, Tensor>;
    try {
      folded = foldActivationScale(new Map<string, Tensor>([...this.state.hostParams(), ...buffers]), s);
    } finally {
      for (const t of buffers.values()) t.dispose();
    }
    const c = await SparseCoder.make({ ...this.cfg, matryoshkaPrefixes: [...(this.cfg.matryoshkaPrefixes ?? [])] }, this.dIn, folded as Map<CoderParamName, Tensor>, this.device);
    c.computeDtype = this.computeDtype;
    return c;
  }

  /**
   * Writes cfg.json (byte-exact sparsify format) and sae.safetensors (F32, sparsify names), or
   * with `format: 'saelens'` a SAELens 6 folder (cfg.json + sae_weights.safetensors; TopK, and the
   * SAELens kinds as standard / jumprelu inference folders). `activationScale`: the coder was
   * trained on s·x; the files get s folded in (SAELens's expected_average_only_in).
   */
  async saveToDisk(dir: string, opts: { format?: 'sparsify' | 'saelens'; activationScale?: number } & SaeLensSaveOptions = {}): Promise<void> {
    this.alive();
    await this.state.syncToHost();
    const buffers = this.kind?.buffers() ?? new Map<string, Tensor>();
    const live = new Map<string, Tensor>([...this.state.hostParams(), ...buffers]);
    // Trained on s·x (normalize_activations): the saved coder reads raw x (activation-fold.ts).
    const params = opts.activationScale !== undefined ? foldActivationScale(live, opts.activationScale) : live;
    try {
      if (opts.format === 'saelens') {
        if (this.kind) writeKindAsSaeLens(dir, this.cfg, this.dIn, params, opts);
        else writeSparsifyAsSaeLens(dir, this.cfg, this.dIn, params, opts);
        return;
      }
      if (opts.format !== undefined && opts.format !== 'sparsify') throw new ValueError(`saveToDisk: format must be 'sparsify' or 'saelens', got ${JSON.stringify(opts.format)}`);
      checkNoOtherFormat(dir, 'sparsify');
      writeCoderDir(dir, this.cfg, this.dIn, params);
    } finally {
      if (params !== live) for (const t of params.values()) t.dispose();
      for (const t of buffers.values()) t.dispose();
    }
  }

  /**
   * The parameter tensors by sparsify name (cpu: live, they change when training; cuda: the host
   * copy, which `syncToHost()` refreshes; a DeviceError when the device copy is newer).
   */
  params(): Map<string, Tensor> {
    this.alive();
    return new Map([...this.state.hostParams(), ...(this.kind?.buffers() ?? [])]);
  }

  /** batchtopk: the running inference threshold θ (SAELens topk_threshold); undefined for other kinds. */
  get topkThreshold(): number | undefined {
    return this.kind?.kind === 'batchtopk' ? this.kind.threshold : undefined;
  }

  /** cuda: copies the device parameters into new host tensors (the old ones are disposed). cpu: nothing. */
  async syncToHost(): Promise<void> {
    this.alive();
    await this.state.syncToHost();
  }

  /** Gradient buffers by parameter name (allocated on first use, zero-filled). cpu only: see readGrads. */
  grads(): Map<string, Tensor> {
    this.alive();
    return new Map(this.state.liveGrads());
  }

  /** Copies of the accumulated gradients by parameter name (cpu and cuda; the caller disposes them). */
  async readGrads(): Promise<Map<string, Tensor>> {
    this.alive();
    return this.state.readGrads();
  }

  /**
   * TopK / GroupMax: k latents per row. relu / jumprelu / batchtopk: a variable number per row in
   * the padded sparse form of ops/threshold.ts (`counts` per row; padding slots are value 0 at
   * index 0), which decode, evaluate() and the features pass accept as is.
   *
   * `computeDtype` 'bf16' (opt-in, CPU, TopK / GroupMax): the encoder product takes bf16-rounded
   * operands with f32 accumulation (`vdpbf16ps` where the CPU has AVX512_BF16; docs/gemm.md).
   */
  async encode(
    x: Tensor,
    opts: { returnPreActs?: boolean; computeDtype?: ComputeDType } = {},
  ): Promise<{ topActs: Tensor; topIndices: Tensor; preActs?: Tensor; counts?: Tensor }> {
    this.alive();
    checkTensorArg(x, 'encode: x');
    if (this.kind) {
      if (opts.returnPreActs) throw new ValueError(`encode: returnPreActs is not available for activation "${this.cfg.activation}" (its encoder never writes the N x M pre-activations)`);
      this.call(opts.computeDtype);
      const r: SparseLatents = await kindEncode(this.state, this.cfg, this.kind, x);
      return r;
    }
    return this.state.encode(x, this.call(opts.computeDtype), opts.returnPreActs ?? false);
  }

  /**
   * The compute dtype of the encoder product in encode / forward / forwardBackward: 'f32'
   * (default) or 'bf16' (opt-in, CPU: bf16-rounded operands, f32 accumulation, `vdpbf16ps`
   * where the CPU has AVX512_BF16; the top-k may differ from f32 at near-ties; docs/gemm.md).
   */
  get computeDtype(): ComputeDType {
    return this.dtype;
  }
  set computeDtype(v: ComputeDType) {
    this.dtype = checkComputeDtype(v, 'computeDtype');
  }

  /** Σ_j topActs[n,j] W_dec[topIndices[n,j]] + b_dec. */
  async decode(topActs: Tensor, topIndices: Tensor): Promise<Tensor> {
    this.alive();
    checkTensorArg(topActs, 'decode: topActs');
    checkTensorArg(topIndices, 'decode: topIndices');
    if (!this.state.paramShapes.has('W_dec')) throw new ValueError('decode: this coder has no decoder (loaded with decoder: false)');
    if (topIndices.dtype !== 'int32') throw new ShapeError(`decode: topIndices must be int32, got ${topIndices.dtype}`);
    return this.state.decode(topActs, topIndices);
  }

  /** sparsify's SparseCoder.forward (no gradients). */
  async forward(
    x: Tensor,
    opts: { y?: Tensor; deadMask?: Tensor | Uint8Array; totalVariance?: number; computeDtype?: ComputeDType } = {},
  ): Promise<ForwardResult> {
    this.alive();
    checkTensorArg(x, 'forward: x');
    if (opts.y !== undefined) checkTensorArg(opts.y, 'forward: y');
    checkTotalVariance(opts.totalVariance, 'forward');
    if (this.kind) {
      this.call(opts.computeDtype);
      return kindForward(this.state, this.cfg, this.kind, x, { y: opts.y, totalVariance: opts.totalVariance });
    }
    return this.state.forward(x, { ...this.call(opts.computeDtype), y: opts.y, deadMask: opts.deadMask, totalVariance: opts.totalVariance });
  }

  /** The trainer's first-batch init: b_dec = mean_0(y ?? x); transcoders also encoder.bias = -(mean_0(x) W_enc^T). */
  async initBiasesFromBatch(x: Tensor, y?: Tensor): Promise<void> {
    this.alive();
    await this.state.initBiases(x, y, this.cfg.transcode);
  }

  /**
   * One training forward/backward: renormalises the decoder rows first (SAE with
   * normalize_decoder, as the trainer does before every forward), computes
   * loss = fvu + auxkAlpha * auxk + multi_topk_fvu / 8 and ADDS lossScale * grad into the grad
   * buffers. One native call.
   */
  async forwardBackward(x: Tensor, opts: ForwardBackwardOptions): Promise<StepLosses> {
    this.alive();
    checkTensorArg(x, 'forwardBackward: x');
    if (opts?.y !== undefined) checkTensorArg(opts.y, 'forwardBackward: y');
    checkTotalVariance(opts?.totalVariance, 'forwardBackward');
    if (typeof opts?.auxkAlpha !== 'number' || !(opts.auxkAlpha >= 0))
      throw new ValueError(`forwardBackward: auxkAlpha must be a number >= 0, got ${opts?.auxkAlpha}`);
    if (this.kind) {
      this.call();
      if (opts.deadMask !== undefined && opts.deadFromCounters) throw new ValueError('forwardBackward: pass deadMask or deadFromCounters, not both');
      // The counters are read (a device read on cuda, once per update) only when a dead-latent term is on.
      const k = this.kind.kind;
      const wanted = k === 'jumprelu' ? (opts.preActLossCoefficient ?? 0) !== 0 : k !== 'relu' && opts.auxLossCoefficient !== 0;
      const dead = opts.deadMask !== undefined ? kindDeadMask(opts.deadMask) : opts.deadFromCounters && wanted ? await this.deadFromCounters() : undefined;
      return kindForwardBackward(this.state, this.cfg, this.kind, x, { ...opts, lossScale: opts.lossScale ?? 1, dead });
    }
    return this.state.forwardBackward(x, {
      ...this.call(opts.computeDtype),
      y: opts.y,
      deadMask: opts.auxkAlpha > 0 ? opts.deadMask : undefined,
      deadFromCounters: opts.auxkAlpha > 0 && (opts.deadFromCounters ?? false),
      auxkAlpha: opts.auxkAlpha,
      lossScale: opts.lossScale ?? 1,
      totalVariance: opts.totalVariance,
      didFire: opts.didFire,
      trackFired: opts.trackFired,
      normalizeDecoder: this.cfg.normalizeDecoder && !this.cfg.transcode,
      rows: opts.rows,
      batchVariance: opts.batchVariance,
    });
  }

  /** The latents selected by `trackFired` forwardBackward calls since the last call (0/1 per latent); clears them. */
  async takeFiredLatents(): Promise<Int32Array> {
    this.alive();
    return this.state.takeFired();
  }

  /**
   * sparsify's dead-latent bookkeeping, kept in the coder's state on its device: at each
   * optimizer step num_tokens_since_fired += tokens, then 0 for the latents the `trackFired`
   * steps selected since the last update (cleared). Dead = counter > threshold. Returns the number dead.
   */
  async updateDeadLatents(tokens: number): Promise<number> {
    this.alive();
    if (!(tokens >= 0) || !Number.isFinite(tokens)) throw new ValueError(`updateDeadLatents: tokens must be a finite number >= 0, got ${tokens}`);
    // The kinds' steps (kind-step.ts) mark the state's fired latents as its own steps do.
    this.deadFromCountersCache = undefined;
    return this.state.updateDeadLatents(tokens);
  }

  /** SAELens kinds: the dead mask of the counters (AuxK, the pre-act loss), a host copy. */
  private async deadFromCounters(): Promise<Int32Array> {
    if (!this.deadFromCountersCache) {
      const counts = await this.state.readDeadLatents();
      this.deadFromCountersCache = Int32Array.from(counts, (v) => (v > this.deadThreshold ? 1 : 0));
    }
    return this.deadFromCountersCache;
  }

  /** The dead-latent counters (tokens since each latent fired), a host copy. */
  async readDeadLatents(): Promise<Float64Array> {
    this.alive();
    return this.state.readDeadLatents();
  }

  /** Sets the dead-latent threshold (dead_feature_threshold) and the counters (default: all 0, e.g. from a checkpoint). */
  async loadDeadLatents(threshold: number, counts?: Float64Array): Promise<void> {
    this.alive();
    if (typeof threshold !== 'number' || Number.isNaN(threshold)) throw new ValueError(`loadDeadLatents: threshold must be a number, got ${threshold}`);
    if (counts && counts.length !== this.numLatents)
      throw new ValueError(`loadDeadLatents: ${counts.length} counters, the coder has ${this.numLatents} latents`);
    this.deadThreshold = threshold;
    this.deadFromCountersCache = undefined;
    await this.state.loadDeadLatents(threshold, counts);
  }

  /** Clears the accumulated gradients (on a device: done by its next call). */
  zeroGrad(): void {
    if (!this.state.isDisposed) this.state.zeroGrads();
  }

  /** True when the decoder gradient should be projected before a step (trainer rule). */
  get projectsDecoderGrad(): boolean {
    // SAELens 6 has no decoder-norm constraint for its kinds (the L1 / L0 terms read the norms instead).
    return this.cfg.normalizeDecoder && !this.cfg.transcode && !this.kind && this.state.paramShapes.has('W_dec');
  }

  get isDisposed(): boolean {
    return this.state.isDisposed;
  }

  dispose(): void {
    this.state.dispose();
    this.kind?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `SparseCoder(d_in=${this.dIn}, num_latents=${this.numLatents}, k=${this.cfg.k}, activation=${this.cfg.activation}${this.cfg.transcode ? ', transcode' : ''}${this.device === 'cuda' ? ', device=cuda' : ''})`;
  }

  // ---- internals ----
  private alive(): void {
    if (this.state.isDisposed) throw new DisposedError('SparseCoder has been disposed');
  }

  /** This call's k / activation / multi_topk (cfg may have changed since the last call) and compute dtype, checked. */
  private call(dtype?: ComputeDType): { k: number; activation: SparseCoderConfig['activation']; multiTopk: boolean; computeDtype: ComputeDType } {
    const problem = coderSpecProblem(this.cfg, this.numLatents);
    if (problem) throw new ValueError(problem);
    const computeDtype = dtype === undefined ? this.dtype : checkComputeDtype(dtype, 'computeDtype');
    if (computeDtype === 'bf16' && this.device !== 'cpu')
      throw new ValueError(`computeDtype 'bf16' runs on the CPU only; this coder is on ${this.device}`);
    return { k: this.cfg.k, activation: this.cfg.activation, multiTopk: this.cfg.multiTopk, computeDtype };
  }

  /** @internal The host parameters as the native kernels name them (tests; cpu, or cuda after syncToHost). */
  weights(): CoderWeights {
    const t = this.state.hostParams();
    return { encW: t.get('encoder.weight')!, encB: t.get('encoder.bias')!, W_dec: t.get('W_dec'), b_dec: t.get('b_dec')!, W_skip: t.get('W_skip') };
  }
}

export { SparseCoder as Sae };

/** An explicit dead mask (nonzero = dead) as the kinds take it: a host Int32Array. */
function kindDeadMask(m: Tensor | Uint8Array): Int32Array {
  if (m instanceof Uint8Array) return Int32Array.from(m, (v) => (v ? 1 : 0));
  return m.dtype === 'int32' ? m.toInt32Array() : Int32Array.from(m.toFloat32Array(), (v) => (v ? 1 : 0));
}
