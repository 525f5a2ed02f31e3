/**
 * SparseCoder (alias Sae): sparsify's TopK / GroupMax sparse autoencoder or transcoder, with
 * parameters in native f32 memory and every heavy operation one native call (see docs/sae.md).
 *
 * Parameters (sparsify's safetensors names): encoder.weight [M,D], encoder.bias [M],
 * W_dec [M,D] (row = latent; absent with decoder: false), b_dec [D], W_skip [D,D] (skip_connection).
 *
 * device 'cuda' (CUDA build with a GPU): the host f32 tensors stay the source of truth for saving;
 * the working copy lives on the device (cuda-coder.ts) and encode / decode / forward /
 * forwardBackward run there (outputs come back as host tensors). params() is a host snapshot:
 * after training steps call `await coder.syncToHost()` first (saveToDisk does it). skip_connection
 * (W_skip) and multi_topk work on cuda too. Not on cuda: returnPreActs. Never run on a GPU yet.
 */
import { checkTensorArg, checkTotalVariance } from './coder-args.js';
import { allocating, checkCoderSize, coderParamBytes } from './size-limits.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { listCoderDirs, readCoderDir, writeCoderDir } from './checkpoint.js';
import { numLatentsOf, sparseCoderConfig, type SparseCoderConfig } from './config.js';
import { CudaResident, deadMaskI32, requireCuda } from './cuda-coder.js';
import { DeviceError, DisposedError, FileFormatError, ShapeError, ValueError } from './errors.js';
import { snapshotDownload } from './hub.js';
import { initEncoderWeight, normalizeRows } from './init.js';
import { naturalSort } from './natsort.js';
import { checkNoOtherFormat, isSaeLensDir, readSaeLensDir, saeLensToSparsify, writeSparsifyAsSaeLens, type SaeLensLoadOptions, type SaeLensSaveOptions } from './saelens/format.js';
import {
  saeDecode,
  saeEncode,
  saeInitBiases,
  saeProjectDecoderGrad,
  saeStep,
  type CoderSpec,
  type CoderWeights,
} from './ops/sae.js';
import { native } from './native.js';
import { Tensor, type Device } from './tensor.js';

export const CODER_PARAM_NAMES = ['encoder.weight', 'encoder.bias', 'W_dec', 'b_dec', 'W_skip'] as const;
export type CoderParamName = (typeof CODER_PARAM_NAMES)[number];

export interface CoderLoadOptions {
  device?: Device;
  /** false: encoder only (W_dec neither required nor loaded), as sparsify's decoder=False. */
  decoder?: boolean;
}

export interface ForwardResult {
  /** The reconstruction (the 4k one with multi_topk, as sparsify). */
  saeOut: Tensor;
  latentActs: Tensor;
  /** int32 */
  latentIndices: Tensor;
  fvu: number;
  auxkLoss: number;
  multiTopkFvu: number;
}

export interface ForwardBackwardOptions {
  /** Target (transcoders: the module output). Default: x. */
  y?: Tensor;
  /** Dead latents (nonzero = dead) for the AuxK loss. */
  deadMask?: Tensor | Uint8Array;
  auxkAlpha: number;
  /** Gradients added are lossScale * d(loss) (e.g. 1 / grad_acc_steps). Default 1. */
  lossScale?: number;
  /** Normaliser of FVU / AuxK / Multi-TopK instead of this batch's variance (PR #138). */
  totalVariance?: number;
  /** int32 [M]: entries of the latents selected in this batch are set to 1 (a host tensor also on cuda). */
  didFire?: Tensor;
  /** Train on rows [begin, end) of x (and y) only: micro-batches as views, also of device tensors. */
  rows?: [number, number];
}

export interface StepLosses {
  loss: number;
  fvu: number;
  auxkLoss: number;
  multiTopkFvu: number;
}

function checkDevice(device: Device | undefined, cfg?: SparseCoderConfig): Device {
  const d = device ?? 'cpu';
  if (d !== 'cpu' && d !== 'cuda') throw new DeviceError(`SparseCoder: unknown device '${d as string}' (expected 'cpu' or 'cuda')`);
  if (d === 'cuda') {
    requireCuda('SparseCoder');
  }
  return d;
}

/** Host view of a tensor that may live on the device (one copy; used once per run, e.g. bias init). */
async function onHost(t: Tensor): Promise<{ t: Tensor; owned: boolean }> {
  if (t.device !== 'cuda') return { t, owned: false };
  return { t: await t.to('cpu'), owned: true };
}

export class SparseCoder implements Disposable {
  /** The config; `cfg.k` may be changed between calls (sparsify's k schedule mutates it too). */
  readonly cfg: SparseCoderConfig;
  readonly dIn: number;
  readonly numLatents: number;
  readonly device: Device;
  private readonly tensors: Map<CoderParamName, Tensor>;
  private gradTensors: Map<CoderParamName, Tensor> | undefined;
  private disposed = false;
  /** @internal device-resident working copy (device 'cuda'). */
  cudaState: CudaResident | undefined;

  private constructor(cfg: SparseCoderConfig, dIn: number, tensors: Map<CoderParamName, Tensor>, device: Device) {
    this.cfg = cfg;
    this.dIn = dIn;
    this.numLatents = numLatentsOf(cfg, dIn);
    this.tensors = tensors;
    this.device = device;
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
    const device = checkDevice(opts.device, full);
    const M = numLatentsOf(full, dIn);
    const size = { numLatents: M, dIn, skipConnection: full.skipConnection };
    checkCoderSize(size, 'SparseCoder.create');
    const enc = allocating(coderParamBytes(size), 'SparseCoder.create', () => initEncoderWeight(M, dIn, opts.seed ?? 0));
    const t = new Map<CoderParamName, Tensor>();
    t.set('encoder.weight', Tensor.from(enc, [M, dIn]));
    t.set('encoder.bias', Tensor.zeros([M]));
    if (opts.decoder ?? true) {
      if (full.transcode) t.set('W_dec', Tensor.zeros([M, dIn]));
      else t.set('W_dec', Tensor.from(full.normalizeDecoder ? normalizeRows(enc, M, dIn) : enc.slice(), [M, dIn]));
    }
    t.set('b_dec', Tensor.zeros([dIn]));
    if (full.skipConnection) t.set('W_skip', Tensor.zeros([dIn, dIn]));
    const coder = new SparseCoder(full, dIn, t, device);
    coder.checkSpec();
    await coder.attachDevice();
    return coder;
  }

  /**
   * Loads `<dir>/cfg.json` + `<dir>/sae.safetensors` (F32/BF16/F16 files; computes in f32), or a
   * SAELens `topk` folder (`sae_weights.safetensors`, see saelens/format.ts).
   */
  static async loadFromDisk(dir: string, opts: CoderLoadOptions & SaeLensLoadOptions = {}): Promise<SparseCoder> {
    const device = checkDevice(opts.device);
    if (isSaeLensDir(dir)) {
      const p = saeLensToSparsify(await readSaeLensDir(dir), opts, dir);
      return SparseCoder.fromParams(p.cfg, p.dIn, p.tensors, device);
    }
    const files = readCoderDir(dir, { decoder: opts.decoder ?? true });
    const t = new Map<CoderParamName, Tensor>();
    try {
      for (const name of CODER_PARAM_NAMES) {
        const src = files.tensors.get(name);
        if (src) t.set(name, await src.to('float32')); // always a private heap copy (files are mapped read-only)
      }
    } finally {
      for (const src of files.tensors.values()) src.dispose();
    }
    const coder = new SparseCoder(files.cfg, files.dIn, t, device);
    coder.checkSpec();
    await coder.attachDevice();
    return coder;
  }

  /** @internal A coder owning these f32 parameter tensors (sparsify names). */
  static async fromParams(cfg: SparseCoderConfig, dIn: number, tensors: Map<string, Tensor>, device: Device = 'cpu'): Promise<SparseCoder> {
    const coder = new SparseCoder(cfg, dIn, tensors as Map<CoderParamName, Tensor>, device);
    coder.checkSpec();
    await coder.attachDevice();
    return coder;
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
   * Writes cfg.json (byte-exact sparsify format) and sae.safetensors (F32, sparsify names), or
   * with `format: 'saelens'` a SAELens 6 folder (cfg.json + sae_weights.safetensors, TopK only).
   */
  async saveToDisk(dir: string, opts: { format?: 'sparsify' | 'saelens' } & SaeLensSaveOptions = {}): Promise<void> {
    this.alive();
    await this.syncToHost();
    const params = new Map([...this.tensors.entries()]);
    if (opts.format === 'saelens') return writeSparsifyAsSaeLens(dir, this.cfg, this.dIn, params, opts);
    if (opts.format !== undefined && opts.format !== 'sparsify') throw new ValueError(`saveToDisk: format must be 'sparsify' or 'saelens', got ${JSON.stringify(opts.format)}`);
    checkNoOtherFormat(dir, 'sparsify');
    writeCoderDir(dir, this.cfg, this.dIn, params);
  }

  /**
   * The parameter tensors by sparsify name (cpu: live, they change when training; cuda: the host
   * copy, which `syncToHost()` refreshes; a DeviceError when the device copy is newer).
   */
  params(): Map<string, Tensor> {
    this.alive();
    if (this.cudaState?.stale)
      throw new DeviceError('params(): the parameters on the device are newer than the host copy; call `await coder.syncToHost()` first');
    return new Map(this.tensors);
  }

  /** cuda: copies the device parameters into new host tensors (the old ones are disposed). cpu: nothing. */
  async syncToHost(): Promise<void> {
    this.alive();
    const cs = this.cudaState;
    if (!cs?.sae || !cs.stale) return;
    const r = await native().cudaSaeRead(cs.sae, {});
    const fresh: [CoderParamName, unknown][] = [['encoder.weight', r.wEnc], ['encoder.bias', r.bEnc], ['W_dec', r.wDec], ['b_dec', r.bDec]];
    if (r.wSkip) fresh.push(['W_skip', r.wSkip]);
    for (const [name, h] of fresh) {
      this.tensors.get(name)?.dispose();
      this.tensors.set(name, new Tensor(h as never));
    }
    cs.stale = false;
  }

  /** Gradient buffers by parameter name (allocated on first use, zero-filled). cpu only: see readGrads. */
  grads(): Map<string, Tensor> {
    this.alive();
    if (this.device === 'cuda') throw new DeviceError('grads(): the gradients of a cuda coder live on the device; use `await coder.readGrads()`');
    return new Map(this.gradBuffers());
  }

  /** Copies of the accumulated gradients by parameter name (cpu and cuda; the caller disposes them). */
  async readGrads(): Promise<Map<string, Tensor>> {
    this.alive();
    const cs = this.cudaState;
    if (!cs) return new Map([...this.gradBuffers()].map(([k, g]) => [k, g.clone()]));
    if (!cs.sae) throw new ValueError('readGrads: this coder has no decoder (loaded with decoder: false)');
    await cs.flush();
    const r = await native().cudaSaeRead(cs.sae, { grads: true });
    for (const h of [r.wEnc, r.bEnc, r.wDec, r.bDec, r.wSkip]) if (h) new Tensor(h).dispose();
    const out = new Map<string, Tensor>([
      ['encoder.weight', new Tensor(r.gradWEnc)],
      ['encoder.bias', new Tensor(r.gradBEnc)],
      ['W_dec', new Tensor(r.gradWDec)],
      ['b_dec', new Tensor(r.gradBDec)],
    ]);
    if (r.gradWSkip) out.set('W_skip', new Tensor(r.gradWSkip));
    return out;
  }

  async encode(x: Tensor, opts: { returnPreActs?: boolean } = {}): Promise<{ topActs: Tensor; topIndices: Tensor; preActs?: Tensor }> {
    this.alive();
    checkTensorArg(x, 'encode: x');
    const cs = this.cudaState;
    if (cs) {
      if (opts.returnPreActs) throw new ValueError('encode: returnPreActs is not implemented on the CUDA backend');
      this.checkSpec();
      const call = { k: this.cfg.k, activation: this.cfg.activation };
      const r = cs.sae ? await native().cudaSaeEncode(cs.sae, x.handle, call) : await native().cudaEncoderEncode(cs.encoder, x.handle, call);
      return { topActs: new Tensor(r.acts), topIndices: new Tensor(r.indices) };
    }
    const r = await saeEncode(this.weights(), x, this.spec(), opts.returnPreActs ?? false);
    return { topActs: r.acts, topIndices: r.indices, ...(r.preActs ? { preActs: r.preActs } : {}) };
  }

  /** Σ_j topActs[n,j] W_dec[topIndices[n,j]] + b_dec. */
  async decode(topActs: Tensor, topIndices: Tensor): Promise<Tensor> {
    this.alive();
    checkTensorArg(topActs, 'decode: topActs');
    checkTensorArg(topIndices, 'decode: topIndices');
    const W = this.tensors.get('W_dec');
    if (!W) throw new ValueError('decode: this coder has no decoder (loaded with decoder: false)');
    if (topIndices.dtype !== 'int32') throw new ShapeError(`decode: topIndices must be int32, got ${topIndices.dtype}`);
    if (this.cudaState) return new Tensor(await native().cudaSaeDecode(this.cudaState.sae, topActs.handle, topIndices.handle));
    return saeDecode(W, this.tensors.get('b_dec')!, topActs, topIndices);
  }

  /** sparsify's SparseCoder.forward (no gradients). */
  async forward(x: Tensor, opts: { y?: Tensor; deadMask?: Tensor | Uint8Array; totalVariance?: number } = {}): Promise<ForwardResult> {
    this.alive();
    checkTensorArg(x, 'forward: x');
    if (opts.y !== undefined) checkTensorArg(opts.y, 'forward: y');
    checkTotalVariance(opts.totalVariance, 'forward');
    if (this.cudaState) {
      const r = await this.cudaStep(x, 'forward', { y: opts.y, deadMask: opts.deadMask, totalVariance: opts.totalVariance, backward: false, outputs: true });
      return { saeOut: new Tensor(r.saeOut), latentActs: new Tensor(r.acts), latentIndices: new Tensor(r.indices), fvu: r.fvu, auxkLoss: r.auxkLoss, multiTopkFvu: r.multiTopkFvu };
    }
    const r = await saeStep(this.weights(), undefined, x, opts.y, this.spec(), {
      deadMask: opts.deadMask,
      totalVariance: opts.totalVariance,
      outputs: true,
    });
    return {
      saeOut: r.saeOut!,
      latentActs: r.latentActs!,
      latentIndices: r.latentIndices!,
      fvu: r.fvu,
      auxkLoss: r.auxkLoss,
      multiTopkFvu: r.multiTopkFvu,
    };
  }

  /** The trainer's first-batch init: b_dec = mean_0(y ?? x); transcoders also encoder.bias = -(mean_0(x) W_enc^T). */
  async initBiasesFromBatch(x: Tensor, y?: Tensor): Promise<void> {
    this.alive();
    const cs = this.cudaState;
    if (!cs) {
      await saeInitBiases(this.weights(), x, y, this.cfg.transcode);
      return;
    }
    // cuda: computed on the host copy (once per run), then the two biases are pushed to the device.
    await this.syncToHost();
    const hx = await onHost(x);
    const hy = y ? await onHost(y) : undefined;
    try {
      await saeInitBiases(this.weights(), hx.t, hy?.t, this.cfg.transcode);
    } finally {
      if (hx.owned) hx.t.dispose();
      if (hy?.owned) hy.t.dispose();
    }
    const bEnc = this.tensors.get('encoder.bias')!, bDec = this.tensors.get('b_dec')!;
    if (cs.sae) await native().cudaSaeLoadState(cs.sae, { params: { bEnc: bEnc.handle, bDec: bDec.handle } });
    else throw new ValueError('initBiasesFromBatch: this coder has no decoder (loaded with decoder: false)');
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
    if (this.cudaState) {
      if (opts.didFire && (opts.didFire.device !== 'cpu' || opts.didFire.dtype !== 'int32' || opts.didFire.shape.join() !== String(this.numLatents)))
        throw new DeviceError(`forwardBackward: didFire must be a host int32 [${this.numLatents}] tensor on the CUDA backend, got ${opts.didFire.device} ${opts.didFire.dtype} [${opts.didFire.shape}]`);
      const r = await this.cudaStep(x, 'forwardBackward', {
        y: opts.y,
        deadMask: opts.auxkAlpha > 0 ? opts.deadMask : undefined,
        auxkAlpha: opts.auxkAlpha,
        lossScale: opts.lossScale ?? 1,
        totalVariance: opts.totalVariance,
        didFire: opts.didFire?.handle,
        normalizeDecoder: this.cfg.normalizeDecoder && !this.cfg.transcode,
        backward: true,
        ...(opts.rows ? { rowBegin: opts.rows[0], rowEnd: opts.rows[1] } : {}),
      });
      this.cudaState.stale = true; // the decoder rows were renormalised on the device
      new Tensor(r.indices).dispose();
      // loss as the CPU saeStep: fvu + auxk_alpha·auxk + multi_topk_fvu/8 (0 without multi_topk)
      return { loss: r.fvu + opts.auxkAlpha * r.auxkLoss + r.multiTopkFvu / 8, fvu: r.fvu, auxkLoss: r.auxkLoss, multiTopkFvu: r.multiTopkFvu };
    }
    if (opts.rows) {
      const [b, e] = opts.rows;
      const xs = new Tensor(native().trainRowSlice(x.handle, b, e));
      const ys = opts.y ? new Tensor(native().trainRowSlice(opts.y.handle, b, e)) : undefined;
      return this.forwardBackward(xs, { ...opts, y: ys, rows: undefined });
    }
    const r = await saeStep(this.weights(), this.gradWeights(), x, opts.y, this.spec(), {
      deadMask: opts.auxkAlpha > 0 ? opts.deadMask : undefined,
      auxkAlpha: opts.auxkAlpha,
      lossScale: opts.lossScale ?? 1,
      totalVariance: opts.totalVariance,
      didFire: opts.didFire,
      normalizeDecoder: this.cfg.normalizeDecoder && !this.cfg.transcode,
    });
    return { loss: r.loss, fvu: r.fvu, auxkLoss: r.auxkLoss, multiTopkFvu: r.multiTopkFvu };
  }

  /** Removes from each W_dec grad row its component along the (unit) decoder row. */
  async projectDecoderGrad(): Promise<void> {
    this.alive();
    const W = this.tensors.get('W_dec');
    if (!W) throw new ValueError('projectDecoderGrad: this coder has no decoder');
    if (this.cudaState) throw new DeviceError('projectDecoderGrad: on cuda the projection is part of the optimizer step (cudaSaeApply)');
    await saeProjectDecoderGrad(W, this.gradBuffers().get('W_dec')!);
  }

  zeroGrad(): void {
    if (this.cudaState) {
      this.cudaState.pendingZero = true; // done by the next device call (zeroGrad is synchronous)
      return;
    }
    if (this.gradTensors) native().zeroTensors([...this.gradTensors.values()].map((g) => g.handle));
  }

  /** True when the decoder gradient should be projected before a step (trainer rule). */
  get projectsDecoderGrad(): boolean {
    return this.cfg.normalizeDecoder && !this.cfg.transcode && this.tensors.has('W_dec');
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.tensors.values()) t.dispose();
    for (const t of this.gradTensors?.values() ?? []) t.dispose();
    this.cudaState?.dispose();
    this.cudaState = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `SparseCoder(d_in=${this.dIn}, num_latents=${this.numLatents}, k=${this.cfg.k}, activation=${this.cfg.activation}${this.cfg.transcode ? ', transcode' : ''}${this.device === 'cuda' ? ', device=cuda' : ''})`;
  }

  // ---- internals ----
  private alive(): void {
    if (this.disposed) throw new DisposedError('SparseCoder has been disposed');
  }

  /** cuda: creates the resident working copy from the host tensors (disposing the coder on failure). */
  private async attachDevice(): Promise<void> {
    if (this.device !== 'cuda') return;
    try {
      this.cudaState = await CudaResident.create(this.cfg, this.tensors);
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** One cudaSaeForwardBackward call (forward only or with gradients) with this coder's current settings. */
  private async cudaStep(
    x: Tensor,
    what: string,
    o: { y?: Tensor; deadMask?: Tensor | Uint8Array; totalVariance?: number; backward: boolean; outputs?: boolean } & Record<string, unknown>,
  ): Promise<any> {
    const cs = this.cudaState!;
    if (!cs.sae) throw new ValueError(`${what}: this coder has no decoder (loaded with decoder: false)`);
    this.checkSpec();
    await cs.flush();
    const dead = deadMaskI32(o.deadMask, this.numLatents, (a) => Tensor.from(a, [a.length]));
    try {
      return await native().cudaSaeForwardBackward(cs.sae, x.handle, {
        ...o,
        y: o.y?.handle,
        deadMask: dead?.handle,
        totalVariance: o.totalVariance ?? -1,
        k: this.cfg.k,
        activation: this.cfg.activation,
        multiTopk: this.cfg.multiTopk,
      });
    } finally {
      if (dead && dead !== o.deadMask) dead.dispose();
    }
  }

  private spec(): CoderSpec {
    this.checkSpec();
    return { k: this.cfg.k, groupmax: this.cfg.activation === 'groupmax', transcode: this.cfg.transcode, multiTopk: this.cfg.multiTopk };
  }

  private checkSpec(): void {
    const { k, activation, multiTopk } = this.cfg;
    const M = this.numLatents;
    if (!Number.isInteger(k) || k < 1 || k > M) throw new ValueError(`k must be an integer in [1, num_latents=${M}], got ${k}`);
    if (activation === 'groupmax' && M % k !== 0)
      throw new ValueError(`activation "groupmax" needs num_latents (${M}) divisible by k (${k})`);
    if (multiTopk && 4 * k > M) throw new ValueError(`multi_topk needs 4*k (${4 * k}) <= num_latents (${M})`);
  }

  /** @internal */
  weights(): CoderWeights {
    return {
      encW: this.tensors.get('encoder.weight')!,
      encB: this.tensors.get('encoder.bias')!,
      W_dec: this.tensors.get('W_dec'),
      b_dec: this.tensors.get('b_dec')!,
      W_skip: this.tensors.get('W_skip'),
    };
  }

  /** @internal Parameter names and shapes (fixed for the coder's life; valid on any device). */
  paramShapes(): [CoderParamName, number[]][] {
    return [...this.tensors].map(([n, t]) => [n, [...t.shape]]);
  }

  /** @internal */
  gradBuffers(): Map<CoderParamName, Tensor> {
    if (!this.gradTensors) {
      this.gradTensors = new Map();
      for (const [name, t] of this.tensors) this.gradTensors.set(name, Tensor.zeros(t.shape));
    }
    return this.gradTensors;
  }

  private gradWeights(): CoderWeights {
    const g = this.gradBuffers();
    if (!g.has('W_dec')) throw new ValueError('forwardBackward: this coder has no decoder (loaded with decoder: false)');
    return { encW: g.get('encoder.weight')!, encB: g.get('encoder.bias')!, W_dec: g.get('W_dec'), b_dec: g.get('b_dec')!, W_skip: g.get('W_skip') };
  }
}

export { SparseCoder as Sae };
