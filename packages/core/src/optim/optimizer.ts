/**
 * Optimizers over sparse coders, as sparsify's trainer builds them (reference section 5): one
 * parameter group per coder; signum = ScheduleFreeWrapper(SignSGD, momentum 0.95), adam =
 * torch.optim.Adam, muon = Muon for 2-D parameters + Adam for 1-D ones. step() is ONE native
 * call for all coders: decoder-grad projection (SAEs with normalize_decoder), update, zero grads.
 *
 * Learning-rate schedules live outside: pass the schedule's multiplier to step() (see
 * linearWarmupDecay in schedule.ts).
 *
 * Coders on device 'cuda': the optimizer state lives in each coder's resident CUDA state and a
 * step is one `cudaSaeApply` per coder (projection, update, zeroing there); the host-side
 * bookkeeping (Adam's step, signum's k / lr_max / weight_sum, the lr multiplier) is the same
 * code as for cpu. stateDict() then needs a device read: use `await readStateDict()` (both
 * devices). muon on cuda runs Newton-Schulz with bf16 GEMM operands (cpu: f32), so its 2-D
 * updates match cpu to bf16 rounding only. Never run on a GPU yet.
 */
import { ConfigError, DeviceError, ValueError } from '../errors.js';
import { native } from '../native.js';
import type { SparseCoder } from '../sparse-coder.js';
import { Tensor } from '../tensor.js';

export type OptimizerKind = 'adam' | 'signum' | 'muon';

export interface OptimizerOptions {
  /** Base learning rate for every coder (default: sparsify's law for the kind and each coder's M). */
  lr?: number;
  /** signum: schedule-free momentum (0.95); muon: momentum (0.95). */
  momentum?: number;
  /** adam (and muon's Adam half): betas and eps. */
  betas?: [number, number];
  eps?: number;
  /** muon: decoupled weight decay (0.1), Nesterov (true), Newton-Schulz steps (5). */
  weightDecay?: number;
  nesterov?: boolean;
  nsSteps?: number;
}

/** Serializable optimizer state: tensors by name plus scalars (JSON), ready for safetensors. */
export interface OptimizerState {
  kind: OptimizerKind;
  /** `<group>.<param>.<slot>` -> tensor, e.g. `0.W_dec.z`, `1.encoder.bias.exp_avg_sq`. */
  tensors: Map<string, Tensor>;
  /** Per-group scalars (signum: k, lr_max, weight_sum; adam/muon: step), lr, train mode. */
  scalars: { lr: number[]; groups: Record<string, number>[]; trainMode: boolean };
}

export interface Optimizer {
  readonly kind: OptimizerKind;
  /** Base learning rate (first group's; setting it sets every group). */
  lr: number;
  /** Projects decoder grads, updates, zeroes grads. lrMultiplier scales every lr (vectorLrMultiplier: muon's Adam half). */
  step(lrMultiplier?: number, vectorLrMultiplier?: number): Promise<void>;
  /** Schedule-free: parameters <- x (averaged iterate). No-op for adam / muon. */
  eval(): Promise<void>;
  /** Schedule-free: parameters <- y (training iterate). No-op for adam / muon. */
  train(): Promise<void>;
  /** cpu only (the live state tensors); a DeviceError for cuda coders: use readStateDict. */
  stateDict(): OptimizerState;
  /** The state on either device (cuda: copies read from the device, owned by the caller). */
  readStateDict(): Promise<OptimizerState>;
  /** Validates and takes copies now; on cuda they are written to the device before the next step / eval / train / read. */
  loadStateDict(state: OptimizerState): void;
  /** True when the coders live on the device (stateDict() tensors from readStateDict are then copies). */
  readonly onCuda: boolean;
  dispose(): void;
}

/** sparsify's default learning rate for `kind` and a coder with M latents. */
export function defaultLr(kind: OptimizerKind, numLatents: number): number {
  switch (kind) {
    case 'adam':
      return 2e-4 / Math.sqrt(numLatents / 2 ** 14);
    case 'signum':
      return 5e-3 / Math.sqrt(numLatents / 2 ** 14);
    case 'muon':
      return 2e-3;
  }
}

/** @internal One parameter and its per-parameter state slots. */
export interface ParamSlot {
  name: string;
  shape: number[];
  /** cpu: the live parameter and gradient tensors (cuda: unused, the state is on the device). */
  param: Tensor;
  grad: Tensor;
  project: boolean;
  state: Tensor[];
}

/** @internal Parameters of one coder (one param group). */
export interface Group {
  coder: SparseCoder;
  lr: number;
  params: ParamSlot[];
  scalars: Record<string, number>;
}

/** @internal */
export abstract class BaseOptimizer implements Optimizer {
  abstract readonly kind: OptimizerKind;
  protected groups: Group[];
  readonly onCuda: boolean;
  /** cuda: loadStateDict's copies per group, written to the device by flushCuda(). */
  private pendingCuda = new Map<number, { slots: Record<string, (Tensor | undefined)[]> }>();
  protected abstract slotNames(p: ParamSlot): string[];

  constructor(kind: OptimizerKind, coders: SparseCoder[], opts: OptimizerOptions) {
    if (!Array.isArray(coders) || coders.length === 0) throw new ValueError('createOptimizer: needs at least one SparseCoder');
    if (opts.lr !== undefined && !(Number.isFinite(opts.lr) && opts.lr > 0))
      throw new ValueError(`createOptimizer: lr must be a positive number, got ${opts.lr}`);
    const devices = new Set(coders.map((c) => c.device));
    if (devices.size > 1) throw new DeviceError('createOptimizer: the coders are on different devices (cpu and cuda)');
    this.onCuda = devices.has('cuda');
    this.groups = coders.map((coder) => {
      const params: ParamSlot[] = [];
      if (this.onCuda) {
        if (!coder.cudaState?.sae) throw new ValueError('createOptimizer: a cuda coder without a decoder (decoder: false) cannot be trained');
        for (const [name, shape] of coder.paramShapes())
          params.push({ name, shape, param: undefined as never, grad: undefined as never, project: name === 'W_dec' && coder.projectsDecoderGrad, state: [] });
        return { coder, lr: opts.lr ?? defaultLr(kind, coder.numLatents), params, scalars: {} };
      }
      const grads = coder.gradBuffers();
      for (const [name, param] of coder.params()) {
        params.push({
          name,
          shape: [...param.shape],
          param,
          grad: grads.get(name as never)!,
          project: name === 'W_dec' && coder.projectsDecoderGrad,
          state: [],
        });
      }
      return { coder, lr: opts.lr ?? defaultLr(kind, coder.numLatents), params, scalars: {} };
    });
  }

  get lr(): number {
    return this.groups[0].lr;
  }
  set lr(v: number) {
    if (!(Number.isFinite(v) && v > 0)) throw new ValueError(`lr must be a positive number, got ${v}`);
    for (const g of this.groups) g.lr = v;
  }

  abstract step(lrMultiplier?: number, vectorLrMultiplier?: number): Promise<void>;

  async eval(): Promise<void> {}
  async train(): Promise<void> {}
  protected trainMode = true;

  protected checkMultiplier(m: number): void {
    if (!(Number.isFinite(m) && m >= 0)) throw new ValueError(`lrMultiplier must be a finite number >= 0, got ${m}`);
  }

  protected ensureState(p: ParamSlot, init: (p: ParamSlot) => Tensor[]): Tensor[] {
    if (p.state.length === 0) p.state = init(p);
    return p.state;
  }

  protected async run(entries: Record<string, unknown>[]): Promise<void> {
    for (const g of this.groups) if (g.coder.isDisposed) throw new ValueError('optimizer step: a coder has been disposed');
    await native().optimStep(entries);
  }

  /** cuda: one cudaSaeApply for group `g` (pending zeroGrad / loaded state written first). */
  protected async applyCuda(gi: number, opts: Record<string, unknown>): Promise<void> {
    const g = this.groups[gi];
    const cs = this.cudaOf(g);
    await cs.flush();
    await this.flushCuda();
    await native().cudaSaeApply(cs.sae, { ...opts, project: g.params.some((p) => p.project) });
    cs.stale = true;
  }

  /** cuda: p = lerp(p, z, weight) on every coder (schedule-free eval/train). */
  protected async lerpCuda(weight: number): Promise<void> {
    await this.flushCuda();
    for (const g of this.groups) {
      const cs = this.cudaOf(g);
      await native().cudaSaeLerp(cs.sae, weight);
      cs.stale = true;
    }
  }

  private cudaOf(g: Group): NonNullable<SparseCoder['cudaState']> {
    if (g.coder.isDisposed || !g.coder.cudaState?.sae) throw new ValueError('optimizer: a coder has been disposed');
    return g.coder.cudaState;
  }

  /** Writes loadStateDict's copies to the device (resetting the slots it does not name). */
  private async flushCuda(): Promise<void> {
    for (const [gi, pend] of [...this.pendingCuda]) {
      const cs = this.cudaOf(this.groups[gi]);
      const h = (ts: (Tensor | undefined)[]) => ts.map((t) => t?.handle);
      try {
        await native().cudaSaeLoadState(cs.sae, { resetOptimizer: true, ...Object.fromEntries(Object.entries(pend.slots).map(([k, ts]) => [k, h(ts)])) });
      } finally {
        for (const ts of Object.values(pend.slots)) for (const t of ts) t?.dispose();
        this.pendingCuda.delete(gi);
      }
    }
  }

  /** Native slot key (cudaSaeReadState / LoadState) of a state slot name. */
  private static cudaSlot(slot: string): 'm' | 'v' | 'z' {
    if (slot === 'exp_avg') return 'm';
    if (slot === 'exp_avg_sq') return 'v';
    if (slot === 'z') return 'z';
    throw new ConfigError(`optimizer state slot '${slot}' has no CUDA counterpart`);
  }

  async readStateDict(): Promise<OptimizerState> {
    if (!this.onCuda) return this.stateDict();
    await this.flushCuda();
    const tensors = new Map<string, Tensor>();
    const order = ['encoder.weight', 'encoder.bias', 'W_dec', 'b_dec', 'W_skip']; // native slot order (W_skip: skip_connection)
    for (const [gi, g] of this.groups.entries()) {
      const st = await native().cudaSaeReadState(this.cudaOf(g).sae);
      const got: Tensor[] = [];
      for (const p of g.params) {
        const at = order.indexOf(p.name);
        for (const slot of this.slotNames(p)) {
          const h = at < 0 ? undefined : st[BaseOptimizer.cudaSlot(slot)]?.[at];
          if (h) {
            const t = new Tensor(h);
            got.push(t);
            tensors.set(`${gi}.${p.name}.${slot}`, t);
          }
        }
      }
      // Anything read but not named (a slot another optimizer kind left) is freed now.
      for (const arr of Object.values(st) as unknown[][]) for (const h of arr) if (h && !got.some((t) => t.handle === h)) new Tensor(h as never).dispose();
    }
    return { kind: this.kind, tensors, scalars: { lr: this.groups.map((g) => g.lr), groups: this.groups.map((g) => ({ ...g.scalars })), trainMode: this.trainMode } };
  }

  stateDict(): OptimizerState {
    if (this.onCuda) throw new DeviceError('stateDict(): the optimizer state of cuda coders lives on the device; use `await optimizer.readStateDict()`');
    const tensors = new Map<string, Tensor>();
    this.groups.forEach((g, gi) => {
      for (const p of g.params) {
        const names = this.slotNames(p);
        p.state.forEach((t, si) => tensors.set(`${gi}.${p.name}.${names[si]}`, t));
      }
    });
    return { kind: this.kind, tensors, scalars: { lr: this.groups.map((g) => g.lr), groups: this.groups.map((g) => ({ ...g.scalars })), trainMode: this.trainMode } };
  }

  loadStateDict(state: OptimizerState): void {
    if (state.kind !== this.kind) throw new ValueError(`loadStateDict: state is for '${state.kind}', optimizer is '${this.kind}'`);
    if (state.scalars.groups.length !== this.groups.length)
      throw new ValueError(`loadStateDict: state has ${state.scalars.groups.length} groups, optimizer has ${this.groups.length}`);
    this.groups.forEach((g, gi) => {
      g.lr = state.scalars.lr[gi] ?? g.lr;
      g.scalars = { ...state.scalars.groups[gi] };
      const order = ['encoder.weight', 'encoder.bias', 'W_dec', 'b_dec', 'W_skip']; // native slot order (W_skip: skip_connection)
      const cudaSlots: Record<string, (Tensor | undefined)[]> = {};
      for (const p of g.params) {
        const names = this.slotNames(p);
        const slots = names.map((n) => state.tensors.get(`${gi}.${p.name}.${n}`));
        if (slots.every((t) => t === undefined)) {
          p.state = [];
          continue;
        }
        const copies = slots.map((t, si) => {
          if (!t) throw new ValueError(`loadStateDict: missing '${gi}.${p.name}.${names[si]}'`);
          if (t.dtype !== 'float32' || t.shape.join(',') !== p.shape.join(','))
            throw new ValueError(`loadStateDict: '${gi}.${p.name}.${names[si]}' is ${t.dtype} [${t.shape}], expected float32 [${p.shape}]`);
          return t.clone();
        });
        if (!this.onCuda) {
          p.state = copies;
          continue;
        }
        copies.forEach((t, si) => {
          const key = BaseOptimizer.cudaSlot(names[si]);
          (cudaSlots[key] ??= [undefined, undefined, undefined, undefined])[order.indexOf(p.name)] = t;
        });
      }
      if (this.onCuda) {
        for (const ts of Object.values(this.pendingCuda.get(gi)?.slots ?? {})) for (const t of ts) t?.dispose();
        this.pendingCuda.set(gi, { slots: cudaSlots });
      }
    });
    this.trainMode = state.scalars.trainMode;
  }

  dispose(): void {
    for (const g of this.groups) for (const p of g.params) for (const t of p.state) t.dispose();
    for (const pend of this.pendingCuda.values()) for (const ts of Object.values(pend.slots)) for (const t of ts) t?.dispose();
    this.pendingCuda.clear();
  }
}
