/**
 * The CPU CoderState: parameters, gradient accumulators and optimizer moments are host f32
 * tensors; a micro-step is one `saeStep` call and an optimizer step one `optimStep` call
 * (native/src/bindings/sae_ops.cpp, optim_ops.cpp).
 */
import type { CoderParamName } from '../coder-params.js';
import { DisposedError, ValueError } from '../errors.js';
import { native } from '../native.js';
import { saeDecode, saeEncode, saeInitBiases, saeStep, type CoderSpec, type CoderWeights } from '../ops/sae.js';
import { Tensor } from '../tensor.js';
import {
  disposeMoments,
  emptyMoments,
  type CoderCall,
  type CoderState,
  type EncodeResult,
  type ForwardResult,
  type Moments,
  type OptimizerUpdate,
  type StepCall,
  type StepLosses,
} from './coder-state.js';

function spec(call: CoderCall, transcode: boolean): CoderSpec {
  return { k: call.k, groupmax: call.activation === 'groupmax', transcode, multiTopk: call.multiTopk, computeDtype: call.computeDtype ?? 'f32' };
}

function coderWeights(t: Map<CoderParamName, Tensor>): CoderWeights {
  return { encW: t.get('encoder.weight')!, encB: t.get('encoder.bias')!, W_dec: t.get('W_dec'), b_dec: t.get('b_dec')!, W_skip: t.get('W_skip') };
}

export class CpuCoderState implements CoderState {
  readonly device = 'cpu' as const;
  readonly paramShapes: ReadonlyMap<CoderParamName, readonly number[]>;
  readonly hasDecoder: boolean;
  private grads: Map<CoderParamName, Tensor> | undefined;
  /** int32 [M]: the latents selected by trackFired steps since the last takeFired. */
  private fired: Tensor | undefined;
  /** The last batch variance computed (one per batch, reused by its micro-batches). */
  private variance: { of: Tensor['handle']; value: number } | undefined;
  private moments = emptyMoments();
  private disposed = false;

  constructor(
    private readonly params: Map<CoderParamName, Tensor>,
    private readonly transcode: boolean,
  ) {
    this.paramShapes = new Map([...params].map(([n, t]) => [n, [...t.shape]]));
    this.hasDecoder = params.has('W_dec');
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
    if (!this.grads) {
      this.grads = new Map();
      for (const [name, t] of this.params) this.grads.set(name, Tensor.zeros(t.shape));
    }
    return this.grads;
  }

  async readGrads(): Promise<Map<CoderParamName, Tensor>> {
    return new Map([...this.liveGrads()].map(([k, g]) => [k, g.clone()]));
  }

  zeroGrads(): void {
    if (this.grads) native().zeroTensors([...this.grads.values()].map((g) => g.handle));
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
    const r = await saeStep(coderWeights(this.hostParams()), undefined, x, call.y, spec(call, this.transcode), {
      deadMask: call.deadMask,
      totalVariance: call.totalVariance,
      outputs: true,
    });
    return { saeOut: r.saeOut!, latentActs: r.latentActs!, latentIndices: r.latentIndices!, fvu: r.fvu, auxkLoss: r.auxkLoss, multiTopkFvu: r.multiTopkFvu };
  }

  async forwardBackward(x: Tensor, call: StepCall): Promise<StepLosses> {
    const p = this.hostParams();
    if (!this.hasDecoder) throw new ValueError('forwardBackward: this coder has no decoder (loaded with decoder: false)');
    // A micro-batch is a view of rows [begin, end): no copy.
    const rows = (t: Tensor) => (call.rows ? new Tensor(native().trainRowSlice(t.handle, call.rows[0], call.rows[1])) : t);
    if (call.trackFired && call.didFire) throw new ValueError('forwardBackward: pass didFire or trackFired, not both');
    if (call.trackFired) this.fired ??= Tensor.zeros([this.paramShapes.get('encoder.bias')![0]], { dtype: 'int32' });
    const r = await saeStep(coderWeights(p), coderWeights(this.liveGrads()), rows(x), call.y && rows(call.y), spec(call, this.transcode), {
      deadMask: call.deadMask,
      auxkAlpha: call.auxkAlpha,
      lossScale: call.lossScale,
      totalVariance: call.totalVariance ?? (call.batchVariance && call.rows ? await this.rowsVariance(call.y ?? x, call.rows) : undefined),
      didFire: call.trackFired ? this.fired : call.didFire,
      normalizeDecoder: call.normalizeDecoder,
    });
    return { loss: r.loss, fvu: r.fvu, auxkLoss: r.auxkLoss, multiTopkFvu: r.multiTopkFvu };
  }

  /** The whole batch's variance times the share of `rows` in it. */
  private async rowsVariance(batch: Tensor, [r0, r1]: [number, number]): Promise<number> {
    if (this.variance?.of !== batch.handle) this.variance = { of: batch.handle, value: await native().trainTotalVariance(batch.handle) };
    return (this.variance.value * (r1 - r0)) / batch.shape[0];
  }

  async takeFired(): Promise<Int32Array> {
    this.alive();
    const M = this.paramShapes.get('encoder.bias')![0];
    if (!this.fired) return new Int32Array(M);
    const out = this.fired.toInt32Array();
    native().zeroTensors([this.fired.handle]);
    return out;
  }

  async initBiases(x: Tensor, y: Tensor | undefined, transcode: boolean): Promise<void> {
    await saeInitBiases(coderWeights(this.hostParams()), x, y, transcode);
  }

  async optimizerStep(u: OptimizerUpdate): Promise<void> {
    if (this.disposed) throw new ValueError('optimizer step: a coder has been disposed');
    const grads = this.liveGrads();
    const slot = (s: keyof Moments, name: CoderParamName, init: () => Tensor) => {
      let t = this.moments[s].get(name);
      if (!t) this.moments[s].set(name, (t = init()));
      return t.handle;
    };
    const entries: Record<string, unknown>[] = [];
    for (const [name, param] of this.params) {
      const zeros = () => Tensor.zeros(param.shape);
      const base = { param: param.handle, grad: grads.get(name)!.handle, project: u.project && name === 'W_dec' };
      const adam = (lr: number, a: { beta1: number; beta2: number; eps: number; step: number }) => ({
        ...base, kind: 'adam', state: [slot('m', name, zeros), slot('v', name, zeros)], lr, beta1: a.beta1, beta2: a.beta2, eps: a.eps, step: a.step,
      });
      if (u.kind === 'adam') entries.push(adam(u.lr, u));
      else if (u.kind === 'signum')
        // z starts as a copy of the parameters (y), as schedule-free does.
        entries.push({ ...base, kind: 'signum', state: [slot('z', name, () => param.clone())], lr: u.lr, momentum: u.momentum, ckp1: u.ckp1 });
      else if (param.shape.length >= 2)
        entries.push({
          ...base, kind: 'muon', state: [slot('m', name, zeros)], lr: u.lr, momentum: u.momentum, nesterov: u.nesterov, weightDecay: u.weightDecay, nsSteps: u.nsSteps,
        });
      else entries.push(adam(u.vectorLr, u));
    }
    await native().optimStep(entries);
  }

  async lerpToZ(weight: number): Promise<void> {
    const pairs = [...this.moments.z].map(([name, z]) => ({ param: this.params.get(name)!.handle, z: z.handle }));
    if (pairs.length) await native().optimLerp(pairs, weight);
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
    // The replaced tensors are not disposed: a caller of stateDict() may still hold them (GC frees them).
    this.moments = moments;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.params.values()) t.dispose();
    for (const t of this.grads?.values() ?? []) t.dispose();
    this.fired?.dispose();
    disposeMoments(this.moments);
  }

  private alive(): void {
    if (this.disposed) throw new DisposedError('SparseCoder has been disposed');
  }
}
