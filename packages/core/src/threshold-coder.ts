/**
 * ThresholdCoder: a sparse autoencoder whose latents are kept by a per-latent rule instead of a
 * top-k, so each row has its own number of non-zeros: SAELens's `standard` (ReLU), `jumprelu`
 * and `gated` inference architectures. Parameters live in native f32 memory in our layout
 * (encoder rows [M, D], like sparsify's encoder.weight); encode is one fused native call that
 * returns the padded sparse form (ops/threshold.ts), decode is the shared sparse decode.
 *
 *   relu     f = ReLU(h),                   h = x' W_encᵀ + b_enc
 *   jumprelu f = ReLU(h) · 1[h > threshold]
 *   gated    f = 1[x' W_encᵀ + b_gate > 0] · ReLU((x' W_encᵀ) ⊙ exp(r_mag) + b_mag)
 *   x' = x - b_dec when applyBDecToInput, else x;   decode: f W_dec + b_dec
 */
import { ConfigError, DisposedError, DTypeError, ShapeError, ValueError } from './errors.js';
import { saeDecode } from './ops/sae.js';
import { thresholdEncode, thresholdEncodeReference, type SparseLatents, type ThresholdWeights } from './ops/threshold.js';
import { writeThresholdCoderAsSaeLens, type SaeLensSaveOptions } from './saelens/format.js';
import { Tensor } from './tensor.js';

export type ThresholdKind = 'relu' | 'jumprelu' | 'gated';

/** Parameter names: encoder.weight [M,D], encoder.bias [M] (b_enc; b_gate for gated), threshold, r_mag, b_mag [M], W_dec [M,D], b_dec [D]. */
export const THRESHOLD_PARAMS: Record<ThresholdKind, readonly string[]> = {
  relu: ['encoder.weight', 'encoder.bias', 'W_dec', 'b_dec'],
  jumprelu: ['encoder.weight', 'encoder.bias', 'threshold', 'W_dec', 'b_dec'],
  gated: ['encoder.weight', 'encoder.bias', 'r_mag', 'b_mag', 'W_dec', 'b_dec'],
};

export interface ThresholdForward {
  saeOut: Tensor;
  latentActs: Tensor;
  latentIndices: Tensor;
  counts: Tensor;
  fvu: number;
}

export class ThresholdCoder implements Disposable {
  readonly kind: ThresholdKind;
  readonly dIn: number;
  readonly numLatents: number;
  readonly applyBDecToInput: boolean;
  /** SAELens cfg metadata carried along (hook name, model, ...), written back on save. */
  readonly metadata: Record<string, unknown>;
  private readonly tensors: Map<string, Tensor>;
  private disposed = false;

  /** Takes ownership of `tensors` (f32, names of THRESHOLD_PARAMS[kind]). */
  constructor(kind: ThresholdKind, tensors: Map<string, Tensor>, opts: { applyBDecToInput?: boolean; metadata?: Record<string, unknown> } = {}) {
    if (!Object.hasOwn(THRESHOLD_PARAMS, kind)) throw new ValueError(`ThresholdCoder: kind must be one of ${Object.keys(THRESHOLD_PARAMS).join(', ')}, got ${JSON.stringify(kind)}`);
    const enc = tensors.get('encoder.weight');
    if (!enc || enc.shape.length !== 2) throw new ShapeError('ThresholdCoder: encoder.weight must be a [num_latents, d_in] tensor');
    const [M, D] = enc.shape;
    const shapes: Record<string, number[]> = { 'encoder.weight': [M, D], 'encoder.bias': [M], threshold: [M], r_mag: [M], b_mag: [M], W_dec: [M, D], b_dec: [D] };
    for (const name of THRESHOLD_PARAMS[kind]) {
      const t = tensors.get(name);
      if (!t) throw new ValueError(`ThresholdCoder(${kind}): missing parameter '${name}'`);
      if (t.dtype !== 'float32') throw new DTypeError(`ThresholdCoder: '${name}' must be float32, got ${t.dtype}`);
      const want = shapes[name];
      if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i]))
        throw new ShapeError(`ThresholdCoder: '${name}' has shape [${t.shape.join(', ')}], expected [${want.join(', ')}]`);
    }
    this.kind = kind;
    this.dIn = D;
    this.numLatents = M;
    this.applyBDecToInput = opts.applyBDecToInput ?? true;
    this.metadata = opts.metadata ?? {};
    this.tensors = tensors;
  }

  private alive(): void {
    if (this.disposed) throw new DisposedError('ThresholdCoder has been disposed');
  }

  /** The fields evaluation code reads from a coder config: no fixed k (0), never a transcoder. */
  get cfg(): { activation: ThresholdKind; k: number; transcode: false; multiTopk: false; skipConnection: false } {
    return { activation: this.kind, k: 0, transcode: false, multiTopk: false, skipConnection: false };
  }

  /** The parameter tensors by name (live). */
  params(): Map<string, Tensor> {
    this.alive();
    return new Map(this.tensors);
  }

  /**
   * @internal The encoder rule as the native kernel reads it (gated: exp(r_mag) from the current
   * r_mag, in a tensor the caller disposes).
   */
  encoderWeights(): ThresholdWeights {
    const t = this.tensors;
    const enc = { encW: t.get('encoder.weight')!, gateBias: t.get('encoder.bias')! };
    if (this.kind === 'gated')
      return { ...enc, valueScale: Tensor.from(t.get('r_mag')!.toFloat32Array().map(Math.exp), [this.numLatents]), valueBias: t.get('b_mag')! };
    return { ...enc, valueBias: t.get('encoder.bias')!, ...(this.kind === 'jumprelu' ? { gateThreshold: t.get('threshold')! } : {}) };
  }

  private checkInput(x: Tensor, name: string): void {
    if (x.dtype !== 'float32' || x.shape.length !== 2 || x.shape[1] !== this.dIn)
      throw new ShapeError(`ThresholdCoder: ${name} must be a float32 [tokens, ${this.dIn}] tensor, got ${x.dtype} [${x.shape.join(', ')}]`);
  }

  /** The kept latents of each row, in the padded sparse form (counts[n] non-zeros in row n). */
  async encode(x: Tensor): Promise<SparseLatents> {
    this.alive();
    this.checkInput(x, 'x');
    const w = this.encoderWeights();
    try {
      return await thresholdEncode(w, x, this.applyBDecToInput ? this.tensors.get('b_dec') : undefined);
    } finally {
      w.valueScale?.dispose();
    }
  }

  /** Float64 dense reference of encode (tests). */
  encodeReference(x: Tensor): Float64Array {
    this.alive();
    this.checkInput(x, 'x');
    const w = this.encoderWeights();
    try {
      return thresholdEncodeReference(w, x, this.applyBDecToInput ? this.tensors.get('b_dec') : undefined);
    } finally {
      w.valueScale?.dispose();
    }
  }

  /** Σ_j topActs[n,j] W_dec[topIndices[n,j]] + b_dec. */
  async decode(topActs: Tensor, topIndices: Tensor): Promise<Tensor> {
    this.alive();
    return saeDecode(this.tensors.get('W_dec')!, this.tensors.get('b_dec')!, topActs, topIndices);
  }

  /** decode(encode(x)) and its FVU against y (default x). */
  async forward(x: Tensor, opts: { y?: Tensor } = {}): Promise<ThresholdForward> {
    const lat = await this.encode(x);
    const saeOut = await this.decode(lat.topActs, lat.topIndices);
    const y = opts.y ?? x;
    this.checkInput(y, 'y');
    return { saeOut, latentActs: lat.topActs, latentIndices: lat.topIndices, counts: lat.counts, fvu: fvuOf(y, saeOut) };
  }

  /** Writes a SAELens folder (standard / jumprelu / gated); sparsify's format has no such kinds. */
  async saveToDisk(dir: string, opts: { format?: 'saelens' } & SaeLensSaveOptions = {}): Promise<void> {
    this.alive();
    if ((opts.format ?? 'saelens') !== 'saelens')
      throw new ConfigError(`ThresholdCoder.saveToDisk: a ${this.kind} coder is saved in the 'saelens' format only (sparsify's cfg.json has TopK / GroupMax only)`);
    writeThresholdCoderAsSaeLens(dir, this, opts);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.tensors.values()) t.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Σ (y - out)² / Σ (y - mean_0 y)², in float64. */
export function fvuOf(y: Tensor, out: Tensor): number {
  const [N, D] = y.shape;
  const a = y.toFloat32Array(), b = out.toFloat32Array();
  const mean = new Float64Array(D);
  for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) mean[d] += a[n * D + d] / N;
  let err = 0, tv = 0;
  for (let i = 0; i < N * D; i++) {
    err += (a[i] - b[i]) ** 2;
    tv += (a[i] - mean[i % D]) ** 2;
  }
  return err / tv;
}
