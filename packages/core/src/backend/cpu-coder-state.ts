/**
 * The CPU CoderState: a thin wrapper over `CpuSaeState` (native/cpu/sae_state.cpp), which holds
 * the parameters (the host f32 tensors of hostParams(), shared, so they stay live), gradient
 * accumulators, optimizer moments, fired latents and dead-latent counters. A micro-step is one
 * `forwardBackward` call and an optimizer step one `optimizerStep` call, as on CUDA.
 * Encoding, decoding and the bias init are the stateless kernels over the live host tensors.
 */
import { CODER_PARAM_NAMES, NATIVE_PARAM_KEYS, type CoderParamName, type NativeCoderParamName } from '../coder-params.js';
import type { CpuSaeStateHandle, StateParamKey } from '../addon-types.js';
import { DisposedError, ValueError } from '../errors.js';
import { native } from '../native.js';
import { deadArg, saeDecode, saeEncode, saeInitBiases, type CoderSpec, type CoderWeights } from '../ops/sae.js';
import { Tensor } from '../tensor.js';
import {
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

function spec(call: CoderCall, transcode: boolean): CoderSpec {
  return { k: call.k, groupmax: call.activation === 'groupmax', transcode, multiTopk: call.multiTopk, computeDtype: call.computeDtype ?? 'f32' };
}

function coderWeights(t: Map<CoderParamName, Tensor>): CoderWeights {
  return { encW: t.get('encoder.weight')!, encB: t.get('encoder.bias')!, W_dec: t.get('W_dec'), b_dec: t.get('b_dec')!, W_skip: t.get('W_skip') };
}

/** topk_threshold is the batchtopk kind's buffer (kind-step.ts), not a state parameter. */
const isNativeParam = (name: CoderParamName): name is NativeCoderParamName => name in NATIVE_PARAM_KEYS;

/** The state's {wEnc: H, ...} as tensors by parameter name. */
function byName(handles: Partial<Record<StateParamKey, Tensor['handle']>>): Map<CoderParamName, Tensor> {
  const out = new Map<CoderParamName, Tensor>();
  for (const name of CODER_PARAM_NAMES) {
    if (!isNativeParam(name)) continue;
    const h = handles[NATIVE_PARAM_KEYS[name]];
    if (h) out.set(name, new Tensor(h));
  }
  return out;
}

function byKey(tensors: Map<CoderParamName, Tensor>): Partial<Record<StateParamKey, Tensor['handle']>> {
  return Object.fromEntries([...tensors].filter(([name]) => isNativeParam(name)).map(([name, t]) => [NATIVE_PARAM_KEYS[name as NativeCoderParamName], t.handle]));
}

export class CpuCoderState implements CoderState {
  readonly device = 'cpu' as const;
  readonly paramShapes: ReadonlyMap<CoderParamName, readonly number[]>;
  readonly hasDecoder: boolean;
  private readonly native: CpuSaeStateHandle;
  /** JS views of the state's gradient accumulators (made on first use). */
  private grads: Map<CoderParamName, Tensor> | undefined;
  /** JS views of the state's moments; refreshed when a step may have created new ones. */
  private moments = emptyMoments();
  private momentsKind: OptimizerUpdate['kind'] | undefined;
  private disposed = false;
  /** View of the native state's fired marks (kindTensors). */
  private fired: Tensor | undefined;

  constructor(
    private readonly params: Map<CoderParamName, Tensor>,
    private readonly transcode: boolean,
  ) {
    this.paramShapes = new Map([...params].map(([n, t]) => [n, [...t.shape]]));
    this.hasDecoder = params.has('W_dec');
    this.native = new (native().CpuSaeState)(byKey(params), { transcode });
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  hostParams(): Map<CoderParamName, Tensor> {
    this.alive();
    return this.params;
  }

  async syncToHost(): Promise<void> {}

  liveGrads(): Map<CoderParamName, Tensor> {
    this.alive();
    this.grads ??= byName(this.native.grads());
    return this.grads;
  }

  async readGrads(): Promise<Map<CoderParamName, Tensor>> {
    return new Map([...this.liveGrads()].map(([k, g]) => [k, g.clone()]));
  }

  zeroGrads(): void {
    if (!this.disposed) this.native.zeroGrads();
  }

  async encode(x: Tensor, call: CoderCall, returnPreActs: boolean): Promise<EncodeResult> {
    const r = await saeEncode(coderWeights(this.hostParams()), x, spec(call, this.transcode), returnPreActs);
    return { topActs: r.acts, topIndices: r.indices, ...(r.preActs ? { preActs: r.preActs } : {}) };
  }

  async decode(topActs: Tensor, topIndices: Tensor): Promise<Tensor> {
    const p = this.hostParams();
    return saeDecode(p.get('W_dec')!, p.get('b_dec')!, topActs, topIndices);
  }

  async forward(x: Tensor, call: CoderCall & { y?: Tensor; deadMask?: Tensor | Uint8Array; totalVariance?: number }): Promise<ForwardResult> {
    const r = await this.step(x, call, { backward: false, outputs: true, deadMask: deadArg(call.deadMask), totalVariance: call.totalVariance ?? -1 });
    return {
      saeOut: new Tensor(r.saeOut!), latentActs: new Tensor(r.latentActs!), latentIndices: new Tensor(r.latentIndices!),
      fvu: r.fvu, auxkLoss: r.auxkLoss, multiTopkFvu: r.multiTopkFvu,
    };
  }

  async forwardBackward(x: Tensor, call: StepCall): Promise<StepLosses> {
    if (!this.hasDecoder) throw new ValueError('forwardBackward: this coder has no decoder (loaded with decoder: false)');
    const r = await this.step(x, call, {
      deadMask: deadArg(call.deadMask),
      deadFromCounters: call.deadFromCounters ?? false,
      auxkAlpha: call.auxkAlpha,
      lossScale: call.lossScale,
      totalVariance: call.totalVariance ?? -1,
      didFire: call.didFire?.handle,
      trackFired: call.trackFired ?? false,
      normalizeDecoder: call.normalizeDecoder,
      ...(call.rows ? { rowBegin: call.rows[0], rowEnd: call.rows[1], batchVariance: call.batchVariance ?? false } : {}),
    });
    return { loss: r.loss, fvu: r.fvu, auxkLoss: r.auxkLoss, multiTopkFvu: r.multiTopkFvu };
  }

  async kindTensors(): Promise<KindTensors> {
    this.alive();
    this.fired ??= new Tensor(this.native.fired());
    return { params: this.params, grads: this.liveGrads(), fired: this.fired };
  }

  async takeFired(): Promise<Int32Array> {
    this.alive();
    const t = new Tensor(this.native.takeFired());
    try {
      return t.toInt32Array();
    } finally {
      t.dispose();
    }
  }

  async updateDeadLatents(tokens: number): Promise<number> {
    this.alive();
    return this.native.updateDeadLatents(tokens);
  }

  async readDeadLatents(): Promise<Float64Array> {
    this.alive();
    return this.native.deadLatentCounts();
  }

  async loadDeadLatents(threshold: number, counts?: Float64Array): Promise<void> {
    this.alive();
    this.native.loadDeadLatents(counts, threshold);
  }

  async initBiases(x: Tensor, y: Tensor | undefined, transcode: boolean): Promise<void> {
    await saeInitBiases(coderWeights(this.hostParams()), x, y, transcode);
  }

  async optimizerStep(u: OptimizerUpdate): Promise<number | undefined> {
    if (this.disposed) throw new ValueError('optimizer step: a coder has been disposed');
    const { kind, ...hyper } = u;
    const norm = await this.native.optimizerStep({ optimizer: kind, ...hyper });
    // The first step of a kind creates its moments: take JS views of them.
    if (this.momentsKind !== kind) this.refreshMoments();
    this.momentsKind = kind;
    return norm;
  }

  async lerpToZ(weight: number): Promise<void> {
    this.alive();
    await this.native.lerpToZ(weight);
  }

  liveMoments(): Moments {
    this.alive();
    return this.moments;
  }

  async readMoments(): Promise<Moments> {
    const out = emptyMoments();
    for (const s of ['m', 'v', 'z'] as const) for (const [name, t] of this.liveMoments()[s]) out[s].set(name, t.clone());
    return out;
  }

  loadMoments(moments: Moments): void {
    this.alive();
    this.native.loadMoments({ m: byKey(moments.m), v: byKey(moments.v), z: byKey(moments.z) });
    // The replaced tensors are not disposed: a caller of stateDict() may still hold them (GC frees them).
    this.moments = moments;
    this.momentsKind = undefined;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.native.dispose();
    for (const t of this.params.values()) t.dispose();
    for (const t of this.grads?.values() ?? []) t.dispose();
    this.fired?.dispose();
    for (const slot of Object.values(this.moments)) for (const t of slot.values()) t.dispose();
  }

  private refreshMoments(): void {
    const all = this.native.moments();
    for (const slot of ['m', 'v', 'z'] as MomentSlot[])
      for (const [name, t] of byName(all[slot])) {
        if (this.moments[slot].has(name)) t.dispose();
        else this.moments[slot].set(name, t);
      }
  }

  private async step(x: Tensor, call: CoderCall & { y?: Tensor }, opts: Record<string, unknown>) {
    this.alive();
    const s = spec(call, this.transcode);
    return this.native.forwardBackward(x.handle, { y: call.y?.handle, k: s.k, groupmax: s.groupmax, multiTopk: s.multiTopk, computeDtype: s.computeDtype, ...opts });
  }

  private alive(): void {
    if (this.disposed) throw new DisposedError('SparseCoder has been disposed');
  }
}
