/**
 * The CUDA CoderState: a thin wrapper over the CUDA build's resident training state (a
 * `CudaSaeState` from `cudaSaeCreate`, native/cuda/sae_state.cu), which holds parameters, gradient accumulators, optimizer moments and
 * sparsify's dead-latent counters on the device; encoder-only coders hold a resident encoder
 * (a `CudaEncoder` from `cudaEncoderCreate`, inference only). The selected latents of training steps are recorded on
 * the device (trackFired) and folded into the counters there once per optimizer step
 * (updateDeadLatents, which reads back the dead mask for the next steps' AuxK); the [N,k]
 * indices never leave the device.
 * The host f32 tensors stay the source of truth for saving; `stale` says the device copy is
 * newer (after a training step) and must be read back before the host tensors are used.
 * Calls that JS makes synchronously (zeroGrads, loadMoments) are carried out by the next device call.
 *
 * Tested on the emulated CUDA device (native/cuda/emu) in every test run; docs/cuda.md says what that cannot show.
 */
import { CODER_PARAM_NAMES, NATIVE_PARAM_KEYS, type CoderParamName, type NativeCoderParamName } from '../coder-params.js';
import type { SparseCoderConfig } from '../config.js';
import { DeviceError, DisposedError, ShapeError, ValueError } from '../errors.js';
import type { CudaEncoderHandle, CudaSaeStateHandle, StateGradKey } from '../addon-types.js';
import { saeInitBiases } from '../ops/sae.js';
import { Tensor } from '../tensor.js';
import {
  disposeMoments,
  emptyMoments,
  type CoderCall,
  type CoderState,
  type EncodeResult,
  type ForwardResult,
  type Moments,
  type MomentSlot,
  type OptimizerUpdate,
  type StepCall,
  type KindTensors,
  type StepLosses,
} from './coder-state.js';
import { requireCuda } from './cuda-device.js';

type Slots = Record<MomentSlot, (Tensor | undefined)[]>;

export class CudaCoderState implements CoderState {
  readonly device = 'cuda' as const;
  readonly paramShapes: ReadonlyMap<CoderParamName, readonly number[]>;
  readonly hasDecoder: boolean;
  /** The device parameters are newer than the host tensors. */
  private stale = false;
  /** zeroGrads() was called: clear the device accumulators before the next device call. */
  private pendingZero = false;
  /** loadMoments' tensors, written to the device before the next device call. */
  private pendingMoments: Moments | undefined;
  /** The device state may hold optimizer moments (after a step or a load). */
  private hasMoments = false;
  private disposed = false;
  /** Device views of the state's buffers for the kind kernels (kindTensors). */
  private views: KindTensors | undefined;

  private constructor(
    private params: Map<CoderParamName, Tensor>,
    private readonly cfg: SparseCoderConfig,
    /** cudaSaeCreate state (coders with a decoder). */
    private sae: CudaSaeStateHandle | undefined,
    /** cudaEncoderCreate's CudaEncoder (encoder-only coders). */
    private encoder: CudaEncoderHandle | undefined,
  ) {
    this.paramShapes = new Map([...params].map(([n, t]) => [n, [...t.shape]]));
    this.hasDecoder = sae !== undefined;
  }

  static async create(cfg: SparseCoderConfig, params: Map<CoderParamName, Tensor>): Promise<CudaCoderState> {
    const n = requireCuda('SparseCoder');
    if (params.has('W_dec')) {
      const handles = Object.fromEntries([...params].map(([name, t]) => [NATIVE_PARAM_KEYS[name as NativeCoderParamName], t.handle]));
      // The SAELens kinds train in the kind kernels (kind-step.ts) over this state's buffers; its
      // own TopK forward is unused for them, so it gets a valid placeholder k.
      const topk = cfg.activation === 'topk' || cfg.activation === 'groupmax';
      const sae = await n.cudaSaeCreate(handles, {
        k: topk ? cfg.k : 1, activation: topk ? cfg.activation : 'topk', transcode: cfg.transcode, normalizeDecoder: cfg.normalizeDecoder,
      });
      return new CudaCoderState(params, cfg, sae, undefined);
    }
    const bDec = cfg.transcode ? undefined : params.get('b_dec')!.handle;
    const enc = await n.cudaEncoderCreate(params.get('encoder.weight')!.handle, params.get('encoder.bias')!.handle, bDec);
    return new CudaCoderState(params, cfg, undefined, enc);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  hostParams(): Map<CoderParamName, Tensor> {
    this.alive();
    if (this.stale) throw new DeviceError('params(): the parameters on the device are newer than the host copy; call `await coder.syncToHost()` first');
    return this.params;
  }

  async syncToHost(): Promise<void> {
    this.alive();
    if (!this.sae || !this.stale) return;
    const r = await this.sae.read({});
    for (const name of this.paramShapes.keys()) {
      this.params.get(name)?.dispose();
      this.params.set(name, new Tensor(r[NATIVE_PARAM_KEYS[name as NativeCoderParamName]]!));
    }
    this.stale = false;
  }

  liveGrads(): Map<CoderParamName, Tensor> {
    throw new DeviceError('grads(): the gradients of a cuda coder live on the device; use `await coder.readGrads()`');
  }

  async readGrads(): Promise<Map<CoderParamName, Tensor>> {
    const sae = await this.ready('readGrads');
    const r = await sae.read({ grads: true });
    const out = new Map<CoderParamName, Tensor>();
    for (const name of this.paramShapes.keys()) {
      const key = NATIVE_PARAM_KEYS[name as NativeCoderParamName];
      new Tensor(r[key]!).dispose(); // the parameters come along; only the gradients are wanted
      out.set(name, new Tensor(r[`grad${key[0].toUpperCase()}${key.slice(1)}` as StateGradKey]!));
    }
    return out;
  }

  zeroGrads(): void {
    this.pendingZero = true;
  }

  async encode(x: Tensor, call: CoderCall, returnPreActs: boolean): Promise<EncodeResult> {
    this.alive();
    const c = { k: call.k, activation: call.activation, preActs: returnPreActs };
    const r = this.sae ? await this.sae.encode(x.handle, c) : await this.encoder!.encode(x.handle, c);
    return { topActs: new Tensor(r.acts), topIndices: new Tensor(r.indices), ...(r.preActs ? { preActs: new Tensor(r.preActs) } : {}) };
  }

  async decode(topActs: Tensor, topIndices: Tensor): Promise<Tensor> {
    this.alive();
    return new Tensor(await (await this.ready('decode')).decode(topActs.handle, topIndices.handle));
  }

  async forward(x: Tensor, call: CoderCall & { y?: Tensor; deadMask?: Tensor | Uint8Array; totalVariance?: number }): Promise<ForwardResult> {
    const r = await this.step(x, 'forward', call, { backward: false, outputs: true });
    return { saeOut: new Tensor(r.saeOut), latentActs: new Tensor(r.acts), latentIndices: new Tensor(r.indices), fvu: r.fvu, auxkLoss: r.auxkLoss, multiTopkFvu: r.multiTopkFvu };
  }

  async forwardBackward(x: Tensor, call: StepCall): Promise<StepLosses> {
    const M = this.paramShapes.get('encoder.bias')![0];
    const f = call.didFire;
    if (f && (f.device !== 'cpu' || f.dtype !== 'int32' || f.shape.join() !== String(M)))
      throw new DeviceError(`forwardBackward: didFire must be a host int32 [${M}] tensor on the CUDA backend, got ${f.device} ${f.dtype} [${f.shape}]`);
    const r = await this.step(x, 'forwardBackward', call, {
      backward: true,
      auxkAlpha: call.auxkAlpha,
      lossScale: call.lossScale,
      didFire: f?.handle,
      trackFired: call.trackFired ?? false,
      deadFromCounters: call.deadFromCounters ?? false,
      normalizeDecoder: call.normalizeDecoder,
      ...(call.rows ? { rowBegin: call.rows[0], rowEnd: call.rows[1], batchVariance: call.batchVariance ?? false } : {}),
    });
    this.stale = true; // the decoder rows were renormalised on the device
    if (r.indices) new Tensor(r.indices).dispose(); // only there when didFire asked for them
    // loss as the CPU saeStep: fvu + auxk_alpha·auxk + multi_topk_fvu/8 (0 without multi_topk)
    return { loss: r.fvu + call.auxkAlpha * r.auxkLoss + r.multiTopkFvu / 8, fvu: r.fvu, auxkLoss: r.auxkLoss, multiTopkFvu: r.multiTopkFvu };
  }

  async kindTensors(): Promise<KindTensors> {
    const sae = await this.ready('forwardBackward');
    if (!this.views) {
      const v = sae.views();
      const byName = (o: Partial<Record<string, Tensor['handle']>>) => {
        const m = new Map<CoderParamName, Tensor>();
        for (const name of this.paramShapes.keys()) m.set(name, new Tensor(o[NATIVE_PARAM_KEYS[name as NativeCoderParamName]]!));
        return m;
      };
      this.views = { params: byName(v.params), grads: byName(v.grads), fired: new Tensor(v.fired) };
    }
    return this.views;
  }

  async takeFired(): Promise<Int32Array> {
    const t = new Tensor(await (await this.ready('takeFiredLatents')).takeFired());
    try {
      return t.toInt32Array();
    } finally {
      t.dispose();
    }
  }

  async updateDeadLatents(tokens: number): Promise<number> {
    return (await this.ready('updateDeadLatents')).updateDeadLatents(tokens);
  }

  async readDeadLatents(): Promise<Float64Array> {
    return (await this.ready('readDeadLatents')).deadLatentCounts();
  }

  async loadDeadLatents(threshold: number, counts?: Float64Array): Promise<void> {
    await (await this.ready('loadDeadLatents')).loadDeadLatents(counts, threshold);
  }

  async initBiases(x: Tensor, y: Tensor | undefined, transcode: boolean): Promise<void> {
    // Computed on the host copy (once per run), then the two biases are pushed to the device.
    const sae = await this.ready('initBiasesFromBatch');
    await this.syncToHost();
    const hx = x.device === 'cuda' ? await x.to('cpu') : x;
    const hy = y?.device === 'cuda' ? await y.to('cpu') : y;
    try {
      const p = this.params;
      await saeInitBiases({ encW: p.get('encoder.weight')!, encB: p.get('encoder.bias')!, W_dec: p.get('W_dec'), b_dec: p.get('b_dec')!, W_skip: p.get('W_skip') }, hx, hy, transcode);
    } finally {
      if (hx !== x) hx.dispose();
      if (hy !== y) hy?.dispose();
    }
    await sae.loadState({ params: { bEnc: this.params.get('encoder.bias')!.handle, bDec: this.params.get('b_dec')!.handle } });
  }

  async optimizerStep(u: OptimizerUpdate): Promise<number | undefined> {
    if (this.disposed || !this.sae) throw new ValueError('optimizer: a coder has been disposed');
    const sae = await this.ready('optimizer step');
    const call =
      u.kind === 'adam'
        ? { optimizer: 'adam', lr: u.lr, beta1: u.beta1, beta2: u.beta2, eps: u.eps, step: u.step }
        : u.kind === 'signum'
          ? { optimizer: 'signum', lr: u.lr, c: u.ckp1, beta: u.momentum }
          : {
              optimizer: 'muon', lr: u.lr, vectorLr: u.vectorLr, momentum: u.momentum, nesterov: u.nesterov, weightDecay: u.weightDecay,
              nsSteps: u.nsSteps, beta1: u.beta1, beta2: u.beta2, eps: u.eps, step: u.step,
            };
    const norm = await sae.apply({ ...call, project: u.project, maxGradNorm: u.maxGradNorm });
    this.stale = true;
    this.hasMoments = true;
    return norm;
  }

  async lerpToZ(weight: number): Promise<void> {
    const sae = await this.ready('optimizer');
    await sae.lerp(weight);
    this.stale = true;
  }

  liveMoments(): Moments {
    throw new DeviceError('stateDict(): the optimizer state of cuda coders lives on the device; use `await optimizer.readStateDict()`');
  }

  async readMoments(): Promise<Moments> {
    const sae = await this.ready('readStateDict');
    const st = (await sae.readState()) as Partial<Slots & Record<MomentSlot, Tensor['handle'][]>>;
    const out = emptyMoments();
    for (const slot of ['m', 'v', 'z'] as const)
      (st[slot] ?? []).forEach((h, i) => {
        if (h) out[slot].set(CODER_PARAM_NAMES[i], new Tensor(h as never));
      });
    return out;
  }

  loadMoments(moments: Moments): void {
    this.alive();
    if (this.pendingMoments) disposeMoments(this.pendingMoments);
    const empty = Object.values(moments).every((slot) => slot.size === 0);
    // A state that never had moments needs no reset (a new optimizer over a fresh coder costs no call).
    this.pendingMoments = empty && !this.hasMoments ? undefined : moments;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.views) for (const t of [...this.views.params.values(), ...this.views.grads.values(), this.views.fired]) t.dispose();
    this.views = undefined;
    this.sae?.dispose();
    this.encoder?.dispose();
    this.sae = this.encoder = undefined;
    for (const t of this.params.values()) t.dispose();
    if (this.pendingMoments) disposeMoments(this.pendingMoments);
  }

  private alive(): void {
    if (this.disposed) throw new DisposedError('SparseCoder has been disposed');
  }

  /** The resident training state with the deferred zeroGrads / loadMoments carried out. */
  private async ready(what: string): Promise<CudaSaeStateHandle> {
    this.alive();
    if (!this.sae) throw new ValueError(`${what}: this coder has no decoder (loaded with decoder: false)`);
    if (this.pendingZero) await this.sae.loadState({ zeroGrads: true });
    this.pendingZero = false;
    const pend = this.pendingMoments;
    if (pend) {
      this.pendingMoments = undefined;
      const arrays: Partial<Record<MomentSlot, (Tensor["handle"] | undefined)[]>> = {};
      for (const slot of ['m', 'v', 'z'] as const) {
        if (pend[slot].size === 0) continue;
        // By slot (CODER_PARAM_NAMES order): 4, or up to the state's last slot (W_skip, log_threshold).
        const slots = this.paramShapes.has('log_threshold') ? 6 : this.paramShapes.has('W_skip') ? 5 : 4;
        arrays[slot] = CODER_PARAM_NAMES.slice(0, slots).map((name) => pend[slot].get(name)?.handle);
      }
      this.hasMoments = Object.keys(arrays).length > 0;
      try {
        await this.sae.loadState({ resetOptimizer: true, ...arrays });
      } finally {
        disposeMoments(pend);
      }
    }
    return this.sae;
  }

  /** One CudaSaeState.forwardBackward call (forward only or with gradients) with this call's settings. */
  private async step(
    x: Tensor,
    what: string,
    call: CoderCall & { y?: Tensor; deadMask?: Tensor | Uint8Array; totalVariance?: number },
    extra: Record<string, unknown>,
  ): Promise<any> {
    const sae = await this.ready(what);
    const M = this.paramShapes.get('encoder.bias')![0];
    const dead = deadMaskI32(call.deadMask, M);
    try {
      return await sae.forwardBackward(x.handle, {
        ...extra,
        y: call.y?.handle,
        deadMask: dead?.handle,
        totalVariance: call.totalVariance ?? -1,
        k: call.k,
        activation: call.activation,
        multiTopk: call.multiTopk,
      });
    } finally {
      if (dead && dead !== call.deadMask) dead.dispose();
    }
  }
}

/** Dead mask as the CUDA state takes it: int32 [M] (a Uint8Array or a host tensor of any int/float dtype is converted). */
function deadMaskI32(dead: Tensor | Uint8Array | undefined, M: number): Tensor | undefined {
  if (dead === undefined) return undefined;
  if (dead instanceof Uint8Array) {
    if (dead.length !== M) throw new ShapeError(`deadMask has ${dead.length} entries, expected num_latents=${M}`);
    return Tensor.from(Int32Array.from(dead), [M]);
  }
  if (dead.dtype === 'int32') return dead;
  const f = dead.toFloat32Array();
  return Tensor.from(Int32Array.from(f, (v) => (v !== 0 ? 1 : 0)), [f.length]);
}
