/**
 * Optimizers over sparse coders, as sparsify's trainer builds them (reference section 5): one
 * parameter group per coder; signum = ScheduleFreeWrapper(SignSGD, momentum 0.95), adam =
 * torch.optim.Adam, muon = Muon for 2-D parameters + Adam for 1-D ones. step() is ONE native
 * call per coder: decoder-grad projection (SAEs with normalize_decoder), update, zero grads.
 *
 * Learning-rate schedules live outside: pass the schedule's multiplier to step() (see
 * linearWarmupDecay in schedule.ts).
 *
 * The moments live in each coder's CoderState on its device (backend/coder-state.ts); a step is
 * one `optimizerStep` call per coder (projection, update, zeroing there). The host-side
 * bookkeeping (Adam's step, signum's k / lr_max / weight_sum, the lr multiplier) is this code,
 * the same for every device. stateDict() hands out the live host tensors (cpu); readStateDict()
 * copies on every device. muon on cuda runs Newton-Schulz with bf16 GEMM operands (cpu: f32),
 * so its 2-D updates match cpu to bf16 rounding only.
 */
import { emptyMoments, type MomentSlot, type Moments, type OptimizerUpdate } from '../backend/coder-state.js';
import type { CoderParamName } from '../coder-params.js';
import { DeviceError, ValueError } from '../errors.js';
import type { SparseCoder } from '../sparse-coder.js';
import { defaultLr } from './schedule.js';
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
  /**
   * > 0: torch's clip_grad_norm_(coder parameters, maxGradNorm) before every step, per coder
   * (SAELens's trainer: 1.0); 0 (default): no clipping, as sparsify.
   */
  maxGradNorm?: number;
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
  /** The state on either device: copies (read from the device on cuda), owned by the caller. */
  readStateDict(): Promise<OptimizerState>;
  /** Validates and takes copies now; on cuda they are written to the device before the next step / eval / train / read. */
  loadStateDict(state: OptimizerState): void;
  /** True when the coders live on a CUDA device. */
  readonly onCuda: boolean;
  /** 0: no clipping; else the max global gradient norm per coder. */
  readonly maxGradNorm: number;
  /** With clipping: each coder's gradient norm before clipping at the last step (undefined before one). */
  readonly lastGradNorms: readonly (number | undefined)[];
  dispose(): void;
}

/** The moment slot (m, v, z) in which a state-dict slot name lives. */
const MOMENT_OF: Record<string, MomentSlot> = { exp_avg: 'm', exp_avg_sq: 'v', z: 'z' };

/** @internal The parameters of one coder (one param group). */
export interface Group {
  coder: SparseCoder;
  lr: number;
  /** Project the decoder gradient before the update (SAEs with normalize_decoder). */
  project: boolean;
  scalars: Record<string, number>;
}

/** @internal */
export abstract class BaseOptimizer implements Optimizer {
  abstract readonly kind: OptimizerKind;
  protected groups: Group[];
  readonly onCuda: boolean;
  readonly maxGradNorm: number;
  protected gradNorms: (number | undefined)[];
  protected trainMode = true;
  /** The state-dict slot names of a parameter (exp_avg, exp_avg_sq, z). */
  protected abstract slotNames(shape: readonly number[]): string[];

  constructor(kind: OptimizerKind, coders: SparseCoder[], opts: OptimizerOptions) {
    if (!Array.isArray(coders) || coders.length === 0) throw new ValueError('createOptimizer: needs at least one SparseCoder');
    if (opts.lr !== undefined && !(Number.isFinite(opts.lr) && opts.lr > 0))
      throw new ValueError(`createOptimizer: lr must be a positive number, got ${opts.lr}`);
    const clip = opts.maxGradNorm ?? 0;
    if (!(Number.isFinite(clip) && clip >= 0)) throw new ValueError(`createOptimizer: maxGradNorm must be a finite number >= 0 (0 = no clipping), got ${opts.maxGradNorm}`);
    this.maxGradNorm = clip;
    this.gradNorms = coders.map(() => undefined);
    const devices = new Set(coders.map((c) => c.device));
    if (devices.size > 1) throw new DeviceError('createOptimizer: the coders are on different devices (cpu and cuda)');
    this.onCuda = devices.has('cuda');
    this.groups = coders.map((coder) => {
      if (!coder.state.hasDecoder) throw new ValueError('createOptimizer: a coder without a decoder (decoder: false) cannot be trained');
      coder.state.loadMoments(emptyMoments()); // a new optimizer starts from fresh moments
      return { coder, lr: opts.lr ?? defaultLr(kind, coder.numLatents), project: coder.projectsDecoderGrad, scalars: {} };
    });
  }

  get lr(): number {
    return this.groups[0].lr;
  }

  get lastGradNorms(): readonly (number | undefined)[] {
    return this.gradNorms;
  }
  set lr(v: number) {
    if (!(Number.isFinite(v) && v > 0)) throw new ValueError(`lr must be a positive number, got ${v}`);
    for (const g of this.groups) g.lr = v;
  }

  abstract step(lrMultiplier?: number, vectorLrMultiplier?: number): Promise<void>;

  async eval(): Promise<void> {}
  async train(): Promise<void> {}

  protected checkMultiplier(m: number): void {
    if (!(Number.isFinite(m) && m >= 0)) throw new ValueError(`lrMultiplier must be a finite number >= 0, got ${m}`);
  }

  /** One update of group `g`'s coder (one native call on its device; clipping there too). */
  protected async apply(g: Group, update: DistributiveOmit<OptimizerUpdate, 'project' | 'maxGradNorm'>): Promise<void> {
    const norm = await g.coder.state.optimizerStep({ ...update, project: g.project, maxGradNorm: this.maxGradNorm } as OptimizerUpdate);
    this.gradNorms[this.groups.indexOf(g)] = norm;
  }

  /** Schedule-free: p = lerp(p, z, weight) on every coder. */
  protected async lerpAll(weight: number): Promise<void> {
    for (const g of this.groups) await g.coder.state.lerpToZ(weight);
  }

  /** The state dict of moments `per group`, named `<group>.<param>.<slot>`; moments it does not name are left out. */
  private toState(perGroup: Moments[]): OptimizerState {
    const tensors = new Map<string, Tensor>();
    perGroup.forEach((moments, gi) => {
      for (const [name, shape] of this.groups[gi].coder.state.paramShapes) {
        for (const slot of this.slotNames(shape)) {
          const t = moments[MOMENT_OF[slot]].get(name);
          if (t) tensors.set(`${gi}.${name}.${slot}`, t);
        }
      }
    });
    return { kind: this.kind, tensors, scalars: { lr: this.groups.map((g) => g.lr), groups: this.groups.map((g) => ({ ...g.scalars })), trainMode: this.trainMode } };
  }

  stateDict(): OptimizerState {
    return this.toState(this.groups.map((g) => g.coder.state.liveMoments()));
  }

  async readStateDict(): Promise<OptimizerState> {
    const copies: Moments[] = [];
    for (const g of this.groups) copies.push(await g.coder.state.readMoments());
    const state = this.toState(copies);
    // A slot another optimizer kind left is not part of this state: freed now.
    const named = new Set(state.tensors.values());
    for (const m of copies) for (const slot of Object.values(m)) for (const t of slot.values()) if (!named.has(t)) t.dispose();
    return state;
  }

  loadStateDict(state: OptimizerState): void {
    if (state.kind !== this.kind) throw new ValueError(`loadStateDict: state is for '${state.kind}', optimizer is '${this.kind}'`);
    if (state.scalars.groups.length !== this.groups.length)
      throw new ValueError(`loadStateDict: state has ${state.scalars.groups.length} groups, optimizer has ${this.groups.length}`);
    // Validate everything before anything changes.
    const perGroup = this.groups.map((g, gi) => {
      const found: [MomentSlot, CoderParamName, Tensor][] = [];
      for (const [name, shape] of g.coder.state.paramShapes) {
        const names = this.slotNames(shape);
        const slots = names.map((n) => state.tensors.get(`${gi}.${name}.${n}`));
        if (slots.every((t) => t === undefined)) continue;
        slots.forEach((t, si) => {
          if (!t) throw new ValueError(`loadStateDict: missing '${gi}.${name}.${names[si]}'`);
          if (t.dtype !== 'float32' || t.shape.join(',') !== shape.join(','))
            throw new ValueError(`loadStateDict: '${gi}.${name}.${names[si]}' is ${t.dtype} [${t.shape}], expected float32 [${shape}]`);
          found.push([MOMENT_OF[names[si]], name, t]);
        });
      }
      return found;
    });
    this.groups.forEach((g, gi) => {
      g.lr = state.scalars.lr[gi] ?? g.lr;
      g.scalars = { ...state.scalars.groups[gi] };
      const moments = emptyMoments();
      for (const [slot, name, t] of perGroup[gi]) moments[slot].set(name, t.clone());
      g.coder.state.loadMoments(moments);
    });
    this.trainMode = state.scalars.trainMode;
  }

  /** The moments stay with the coders (a new optimizer over them starts afresh). */
  dispose(): void {}
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;
