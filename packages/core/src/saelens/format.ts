/**
 * SAELens coder folders (`cfg.json` + `sae_weights.safetensors`), both ways.
 *
 * Reading (as SAELens 6.18's `SAE.load_from_disk`, then folded into our layouts):
 *   topk                      -> SparseCoder (TopK): W_enc [D,M] transposed to encoder.weight [M,D];
 *                                rescale_acts_by_decoder_norm folded (W_enc col·n, b_enc·n, W_dec row/n,
 *                                as SAELens's own save_inference_model fold); apply_b_dec_to_input=false
 *                                folded into encoder.bias (b_enc + b_dec W_enc, since ours subtracts b_dec)
 *   standard/jumprelu/gated   -> ThresholdCoder (relu / jumprelu / gated)
 *   batchtopk / matryoshka_batchtopk checkpoints -> the JumpReLU SAELens would save for them
 *                                (decoder-norm fold, threshold = topk_threshold for every latent)
 *   normalize_activations expected_average_only_in: folded with `normScalingFactor` when given
 *   (W_enc·s, W_dec/s, b_dec/s, as SAELens's fold_activation_norm_scaling_factor), else loaded
 *   unfolded with a warning, like SAELens; constant_norm_rescale / layer_norm: ConfigError.
 * Writing (`saveSaeLens`): SAELens 6 layout, F32; a TopK SparseCoder as `topk` with
 *   rescale_acts_by_decoder_norm false (our encode is exactly that formula, so nothing needs
 *   folding) and our cfg.json under metadata.sparsify_cfg, so converting back is bitwise exact.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { coderConfigFromJson, coderConfigJson, DEFAULT_SPARSE_CODER_CONFIG, type SparseCoderConfig } from '../config.js';
import { ConfigError, FileFormatError, ValueError } from '../errors.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors, writeFileAtomic } from '../safetensors.js';
import { assertFiniteValues } from '../finite-values.js';
import { folderTargetProblem } from '../folder-target.js';
import { writeFolderFiles } from '../folder-write.js';
import { Tensor } from '../tensor.js';
import { ThresholdCoder, type ThresholdKind } from '../threshold-coder.js';
import { saeLensConfigFromJson, saeLensConfigToJson, type SaeLensConfig } from './config.js';

export const SAELENS_CFG_FILE = 'cfg.json';
export const SAELENS_WEIGHTS_FILE = 'sae_weights.safetensors';
/** The SAELens version whose layout we write (metadata.sae_lens_version must be >= 6 for SAELens to read it as 6.x). */
export const SAELENS_FORMAT_VERSION = '6.18.0';

/** True when dir looks like a SAELens coder folder (and not a sparsify one). */
export function isSaeLensDir(dir: string): boolean {
  if (!existsSync(join(dir, SAELENS_CFG_FILE)) || existsSync(join(dir, 'sae.safetensors'))) return false;
  return existsSync(join(dir, SAELENS_WEIGHTS_FILE)) || hasSaeLensConfig(dir);
}

/** cfg.json carries d_sae, which SAELens configs always have and sparsify's never do (so a missing weights file is named as SAELens's). */
function hasSaeLensConfig(dir: string): boolean {
  try {
    const o: unknown = JSON.parse(readFileSync(join(dir, SAELENS_CFG_FILE), 'utf-8'));
    return o !== null && typeof o === 'object' && !Array.isArray(o) && 'd_sae' in o;
  } catch {
    return false; // unreadable: the sparsify reader names the problem
  }
}

export function readSaeLensConfig(dir: string): SaeLensConfig {
  const path = join(dir, SAELENS_CFG_FILE);
  if (!existsSync(path)) throw new FileFormatError(`${dir}: no ${SAELENS_CFG_FILE} (not a SAELens coder folder)`);
  let text: string;
  try {
    text = readFileSync(path, 'utf-8');
  } catch (e) {
    throw new FileFormatError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: invalid JSON (${(e as Error).message})`);
  }
  return saeLensConfigFromJson(obj, path);
}

/** Raw f32 copies of the tensors SAELens keeps, checked against cfg.json. */
async function readWeights(dir: string, cfg: SaeLensConfig): Promise<Map<string, Float32Array>> {
  const file = join(dir, SAELENS_WEIGHTS_FILE);
  if (!existsSync(file)) throw new FileFormatError(`${dir}: no ${SAELENS_WEIGHTS_FILE}`);
  const { dIn: D, dSae: M } = cfg;
  const want: Record<string, number[]> = { W_enc: [D, M], W_dec: [M, D], b_dec: [D] };
  if (cfg.architecture === 'gated') Object.assign(want, { b_gate: [M], r_mag: [M], b_mag: [M] });
  else want.b_enc = [M];
  if (cfg.architecture === 'jumprelu') want.threshold = [M];
  if (cfg.architecture === 'batchtopk' || cfg.architecture === 'matryoshka_batchtopk') want.topk_threshold = [];
  const header = readSafetensorsHeader(file);
  for (const [name, shape] of Object.entries(want)) {
    const info = header.tensors.get(name);
    if (!info) throw new FileFormatError(`${file}: missing tensor '${name}' (${cfg.architecture} needs [${shape.join(', ')}])`);
    if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) throw new FileFormatError(`${file}: tensor '${name}' has dtype ${info.dtype}; expected a float dtype`);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))
      throw new FileFormatError(`${file}: tensor '${name}' has shape [${info.shape.join(', ')}] but cfg.json (d_in=${D}, d_sae=${M}) needs [${shape.join(', ')}]`);
  }
  const scaling = header.tensors.get('scaling_factor');
  const names = Object.keys(want);
  if (scaling) names.push('scaling_factor');
  const loaded = loadSafetensors(file, { names });
  const out = new Map<string, Float32Array>();
  try {
    for (const [name, t] of loaded) {
      const f = t.dtype === 'float32' ? t : await t.to('float32'); // F64 arrives as float32 already
      out.set(name, f.toFloat32Array().slice());
      if (f !== t) f.dispose();
      assertFiniteValues(file, name, out.get(name)!);
    }
  } finally {
    for (const t of loaded.values()) t.dispose();
  }
  const tk = out.get('topk_threshold');
  // SAELens estimates it as a running minimum of positive activations (starting at 0).
  if (tk && tk[0] < 0) throw new FileFormatError(`${file}: tensor 'topk_threshold' is ${tk[0]}; BatchTopK's threshold is never negative`);
  const sf = out.get('scaling_factor');
  if (sf) {
    // v5 finetuning scale: SAELens drops it when all ones and cannot load it otherwise.
    if (!sf.every((v) => v === 1)) throw new FileFormatError(`${file}: a non-unit 'scaling_factor' (SAELens 5 finetuning scale) is not supported, as in SAELens 6`);
    out.delete('scaling_factor');
  }
  return out;
}

/** Row norms of W_dec [M,D]. */
function rowNorms(W: Float32Array, M: number, D: number): Float32Array {
  const n = new Float32Array(M);
  for (let m = 0; m < M; m++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += W[m * D + d] * W[m * D + d];
    n[m] = Math.sqrt(s);
  }
  return n;
}

/** [R,C] -> [C,R]. */
export function transpose(a: Float32Array, R: number, C: number): Float32Array {
  const out = new Float32Array(R * C);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[c * R + r] = a[r * C + c];
  return out;
}

export interface SaeLensLoadOptions {
  /** expected_average_only_in: the norm scaling factor s to fold (SAELens registry's norm_scaling_factor). */
  normScalingFactor?: number;
}

/** What a SAELens folder holds, in SAELens's own layout (f32), after the cfg upgrade. */
export interface SaeLensFolder {
  cfg: SaeLensConfig;
  tensors: Map<string, Float32Array>;
}

export async function readSaeLensDir(dir: string): Promise<SaeLensFolder> {
  const cfg = readSaeLensConfig(dir);
  return { cfg, tensors: await readWeights(dir, cfg) };
}

/**
 * The folds that turn a SAELens folder into plain formulas: activation-norm scaling, the
 * decoder-norm rescale of topk / batchtopk, batchtopk's shared threshold. Returns the kind and
 * f32 arrays in SAELens names (W_enc still [D,M]).
 */
export function foldSaeLens(folder: SaeLensFolder, opts: SaeLensLoadOptions = {}, where = 'SAELens folder'): { kind: 'topk' | ThresholdKind; t: Map<string, Float32Array> } {
  const { cfg } = folder;
  const t = new Map([...folder.tensors].map(([k, v]) => [k, v.slice()]));
  const D = cfg.dIn, M = cfg.dSae;
  const W_enc = t.get('W_enc')!, W_dec = t.get('W_dec')!, b_dec = t.get('b_dec')!;
  if (cfg.normalizeActivations === 'constant_norm_rescale' || cfg.normalizeActivations === 'layer_norm')
    throw new ConfigError(`${where}: normalize_activations "${cfg.normalizeActivations}" (per-token run-time normalisation) is not supported`);
  if (cfg.normalizeActivations === 'expected_average_only_in') {
    const s = opts.normScalingFactor;
    if (s === undefined) {
      process.emitWarning(`${where}: normalize_activations is "expected_average_only_in" and no normScalingFactor was given: loaded unfolded (inputs must be scaled by s), as SAELens does`);
    } else {
      if (!(s > 0) || !Number.isFinite(s)) throw new ValueError(`${where}: normScalingFactor must be a positive number, got ${s}`);
      for (let i = 0; i < W_enc.length; i++) W_enc[i] *= s;
      for (let i = 0; i < W_dec.length; i++) W_dec[i] /= s;
      for (let i = 0; i < b_dec.length; i++) b_dec[i] /= s;
    }
  }
  warnIfProcessed(cfg, where);
  const arch = cfg.architecture;
  if ((arch === 'topk' || arch === 'batchtopk' || arch === 'matryoshka_batchtopk') && cfg.rescaleActsByDecoderNorm) {
    const n = rowNorms(W_dec, M, D);
    const b_enc = t.get('b_enc')!;
    for (let m = 0; m < M; m++) {
      b_enc[m] *= n[m];
      for (let d = 0; d < D; d++) {
        W_enc[d * M + m] *= n[m];
        W_dec[m * D + d] /= n[m];
      }
    }
  }
  if (arch === 'batchtopk' || arch === 'matryoshka_batchtopk') {
    const th = t.get('topk_threshold')![0];
    t.delete('topk_threshold');
    t.set('threshold', new Float32Array(M).fill(th));
    return { kind: 'jumprelu', t };
  }
  if (arch === 'topk') return { kind: 'topk', t };
  return { kind: arch === 'standard' ? 'relu' : arch === 'gated' ? 'gated' : 'jumprelu', t };
}

/**
 * SAELens trains on `from_pretrained_no_processing` activations (HF-equal) unless
 * model_from_pretrained_kwargs turns TransformerLens's processing on; then the coder expects
 * centred residuals / gain-free norms / hook_z without b_V, which our HF activations are not.
 */
function warnIfProcessed(cfg: SaeLensConfig, where: string): void {
  const kw = cfg.metadata.model_from_pretrained_kwargs as Record<string, unknown> | null | undefined;
  if (!kw || typeof kw !== 'object') return;
  const on = ['center_writing_weights', 'fold_ln', 'fold_value_biases'].filter((k) => kw[k] === true);
  if (on.length)
    process.emitWarning(`${where}: trained with TransformerLens weight processing (${on.join(', ')}); activations of '${String(cfg.metadata.hook_name)}' from the HF model differ from what it saw (see docs/saelens.md)`);
}

function sparsifyCfgOf(cfg: SaeLensConfig, where: string): SparseCoderConfig {
  const saved = cfg.metadata.sparsify_cfg;
  if (saved !== undefined && saved !== null && (typeof saved !== 'object' || Array.isArray(saved)))
    throw new ConfigError(`${where} metadata.sparsify_cfg: must be a JSON object (the coder's sparsify cfg.json), got ${JSON.stringify(saved)}`);
  if (saved && typeof saved === 'object') {
    const { cfg: c, dIn } = coderConfigFromJson(saved, `${where} metadata.sparsify_cfg`);
    const M = c.numLatents || dIn * c.expansionFactor;
    if (dIn === cfg.dIn && M === cfg.dSae && c.k === cfg.k && c.activation === 'topk' && !c.transcode && !c.skipConnection) return c;
  }
  return { ...DEFAULT_SPARSE_CODER_CONFIG, activation: 'topk', expansionFactor: 32, normalizeDecoder: false, numLatents: cfg.dSae, k: cfg.k!, multiTopk: false, skipConnection: false, transcode: false };
}

/** A TopK SAELens folder as the parts of a sparsify coder (cfg + encoder.weight / encoder.bias / W_dec / b_dec). */
export function saeLensToSparsify(folder: SaeLensFolder, opts: SaeLensLoadOptions = {}, where = 'SAELens folder'): { cfg: SparseCoderConfig; dIn: number; tensors: Map<string, Tensor> } {
  const { kind, t } = foldSaeLens(folder, opts, where);
  if (kind !== 'topk') throw new ConfigError(`${where}: architecture "${folder.cfg.architecture}" has no sparsify equivalent (sparsify coders are TopK / GroupMax); load it with loadSaeLensCoder`);
  const D = folder.cfg.dIn, M = folder.cfg.dSae;
  const W_enc = t.get('W_enc')!, b_enc = t.get('b_enc')!, b_dec = t.get('b_dec')!;
  if (!folder.cfg.applyBDecToInput) {
    // Ours encodes (x - b_dec) W_enc + b_enc'; SAELens x W_enc + b_enc: b_enc' = b_enc + b_dec W_enc.
    for (let m = 0; m < M; m++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += b_dec[d] * W_enc[d * M + m];
      b_enc[m] += s;
    }
  }
  const tensors = new Map<string, Tensor>([
    ['encoder.weight', Tensor.from(transpose(W_enc, D, M), [M, D])],
    ['encoder.bias', Tensor.from(b_enc, [M])],
    ['W_dec', Tensor.from(t.get('W_dec')!, [M, D])],
    ['b_dec', Tensor.from(b_dec, [D])],
  ]);
  return { cfg: sparsifyCfgOf(folder.cfg, where), dIn: D, tensors };
}

/** A standard / jumprelu / gated (or batchtopk checkpoint) SAELens folder as a ThresholdCoder. */
export function saeLensToThresholdCoder(folder: SaeLensFolder, opts: SaeLensLoadOptions = {}, where = 'SAELens folder'): ThresholdCoder {
  const { kind, t } = foldSaeLens(folder, opts, where);
  if (kind === 'topk') throw new ConfigError(`${where}: a topk folder loads as a SparseCoder`);
  const D = folder.cfg.dIn, M = folder.cfg.dSae;
  const p = new Map<string, Tensor>([
    ['encoder.weight', Tensor.from(transpose(t.get('W_enc')!, D, M), [M, D])],
    ['encoder.bias', Tensor.from(t.get(kind === 'gated' ? 'b_gate' : 'b_enc')!, [M])],
    ['W_dec', Tensor.from(t.get('W_dec')!, [M, D])],
    ['b_dec', Tensor.from(t.get('b_dec')!, [D])],
  ]);
  if (kind === 'jumprelu') p.set('threshold', Tensor.from(t.get('threshold')!, [M]));
  if (kind === 'gated') {
    p.set('r_mag', Tensor.from(t.get('r_mag')!, [M]));
    p.set('b_mag', Tensor.from(t.get('b_mag')!, [M]));
  }
  return new ThresholdCoder(kind, p, { applyBDecToInput: folder.cfg.applyBDecToInput, metadata: folder.cfg.metadata });
}

/** Refuses to write one format's files into a folder that holds the other's (never a mixed folder). */
export function checkNoOtherFormat(dir: string, writing: 'sparsify' | 'saelens'): void {
  checkFolderTarget(dir);
  if (!existsSync(dir)) return;
  const other = writing === 'saelens' ? 'sae.safetensors' : SAELENS_WEIGHTS_FILE;
  if (existsSync(join(dir, other)))
    throw new FileFormatError(`${dir}: holds ${other} (a ${writing === 'saelens' ? 'sparsify' : 'SAELens'} coder); write the ${writing} format to another folder`);
}

export interface SaeLensSaveOptions {
  /** metadata.hook_name (the TransformerLens or HF name the coder reads). */
  hookName?: string;
  /** More metadata keys (model_name, context_size, ...). */
  metadata?: Record<string, unknown>;
}

function checkFolderTarget(dir: string): void {
  const problem = folderTargetProblem(dir);
  if (problem) throw new FileFormatError(problem);
}

function configText(cfg: SaeLensConfig): string {
  try {
    return JSON.stringify(saeLensConfigToJson(cfg));
  } catch (e) {
    throw new ValueError(`saveToDisk(format 'saelens'): metadata cannot be written as JSON (${(e as Error).message})`);
  }
}

function writeFolder(dir: string, cfg: SaeLensConfig, tensors: Map<string, Tensor>): void {
  checkNoOtherFormat(dir, 'saelens');
  const text = configText(cfg);
  writeFolderFiles(dir, [
    { name: SAELENS_WEIGHTS_FILE, write: (p) => saveSafetensors(p, tensors) },
    { name: SAELENS_CFG_FILE, write: (p) => writeFileAtomic(p, [text]) },
  ]);
}

function baseMetadata(prev: Record<string, unknown>, opts: SaeLensSaveOptions): Record<string, unknown> {
  const m: Record<string, unknown> = { ...prev, sae_lens_version: SAELENS_FORMAT_VERSION, sae_lens_training_version: prev.sae_lens_training_version ?? null };
  if (opts.hookName !== undefined) m.hook_name = opts.hookName;
  return { ...m, ...(opts.metadata ?? {}) };
}

/** Writes a TopK sparsify coder (cfg + f32 tensors in sparsify names) as a SAELens `topk` folder. */
export function writeSparsifyAsSaeLens(dir: string, cfg: SparseCoderConfig, dIn: number, tensors: Map<string, Tensor>, opts: SaeLensSaveOptions = {}): void {
  if (cfg.activation !== 'topk') throw new ConfigError(`saveToDisk(format 'saelens'): activation "${cfg.activation}" has no SAELens architecture (SAELens has topk, not groupmax)`);
  if (cfg.transcode) throw new ConfigError("saveToDisk(format 'saelens'): SAELens 6.18 transcoders are ReLU only; a TopK transcoder has no SAELens architecture");
  if (cfg.skipConnection) throw new ConfigError("saveToDisk(format 'saelens'): skip_connection has no SAELens TopK architecture");
  const enc = tensors.get('encoder.weight')!, M = enc.shape[0];
  const W_dec = tensors.get('W_dec');
  if (!W_dec) throw new ValueError("saveToDisk(format 'saelens'): this coder has no decoder (loaded with decoder: false)");
  const out = new Map<string, Tensor>([
    ['W_enc', Tensor.from(transpose(enc.toFloat32Array(), M, dIn), [dIn, M])],
    ['b_enc', tensors.get('encoder.bias')!],
    ['W_dec', W_dec],
    ['b_dec', tensors.get('b_dec')!],
  ]);
  const sl: SaeLensConfig = {
    architecture: 'topk',
    dIn,
    dSae: M,
    dtype: 'float32',
    device: 'cpu',
    applyBDecToInput: true,
    normalizeActivations: 'none',
    reshapeActivations: 'none',
    k: cfg.k,
    rescaleActsByDecoderNorm: false,
    metadata: baseMetadata({ sparsify_cfg: JSON.parse(coderConfigJson(cfg, dIn)) as Record<string, unknown> }, opts),
    extra: {},
    upgraded: false,
  };
  try {
    writeFolder(dir, sl, out);
  } finally {
    out.get('W_enc')!.dispose();
  }
}

/** Writes a ThresholdCoder as a SAELens standard / jumprelu / gated folder. */
export function writeThresholdCoderAsSaeLens(dir: string, coder: ThresholdCoder, opts: SaeLensSaveOptions = {}): void {
  const p = coder.params();
  const M = coder.numLatents, D = coder.dIn;
  const W_enc = Tensor.from(transpose(p.get('encoder.weight')!.toFloat32Array(), M, D), [D, M]);
  const out = new Map<string, Tensor>([['W_enc', W_enc], [coder.kind === 'gated' ? 'b_gate' : 'b_enc', p.get('encoder.bias')!], ['W_dec', p.get('W_dec')!], ['b_dec', p.get('b_dec')!]]);
  if (coder.kind === 'jumprelu') out.set('threshold', p.get('threshold')!);
  if (coder.kind === 'gated') {
    out.set('r_mag', p.get('r_mag')!);
    out.set('b_mag', p.get('b_mag')!);
  }
  const sl: SaeLensConfig = {
    architecture: coder.kind === 'relu' ? 'standard' : coder.kind,
    dIn: D,
    dSae: M,
    dtype: 'float32',
    device: 'cpu',
    applyBDecToInput: coder.applyBDecToInput,
    normalizeActivations: 'none',
    reshapeActivations: 'none',
    rescaleActsByDecoderNorm: false,
    metadata: baseMetadata(coder.metadata, opts),
    extra: {},
    upgraded: false,
  };
  try {
    writeFolder(dir, sl, out);
  } finally {
    W_enc.dispose();
  }
}
