/**
 * A SAELens standard / jumprelu (or batchtopk checkpoint) folder as a trainable SparseCoder of a
 * SAELens kind, the inverse of kind-export.ts: standard → relu; jumprelu → jumprelu with
 * log_threshold = log(threshold); a jumprelu folder we exported from a batchtopk coder (its
 * metadata.sparsify_cfg says so, one shared threshold) and a SAELens batchtopk checkpoint whose
 * decoder norms fold away (rescale_acts_by_decoder_norm) → batchtopk with topk_threshold = θ
 * (its k, SAELens's float average L0, as is; its topk_threshold_lr and a Matryoshka checkpoint's
 * matryoshka_widths too). A standard training checkpoint's lp_norm is kept.
 */
import { coderConfigFromJson, coderSpecProblem, DEFAULT_SPARSE_CODER_CONFIG, validateCoderConfig, type SparseCoderConfig } from '../config.js';
import { ConfigError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { foldSaeLens, transpose, type SaeLensFolder, type SaeLensLoadOptions } from './format.js';

export function saeLensToKind(folder: SaeLensFolder, opts: SaeLensLoadOptions = {}, where = 'SAELens folder'): { cfg: SparseCoderConfig; dIn: number; tensors: Map<string, Tensor> } {
  const { kind, t } = foldSaeLens(folder, opts, where);
  if (kind === 'gated' || kind === 'topk') throw new ConfigError(`${where}: architecture "${folder.cfg.architecture}" does not load as a trainable SAELens kind; load it with loadSaeLensCoder`);
  const D = folder.cfg.dIn, M = folder.cfg.dSae;
  const W_enc = t.get('W_enc')!, b_enc = t.get('b_enc')!, b_dec = t.get('b_dec')!, W_dec = t.get('W_dec')!;
  const apply = folder.cfg.applyBDecToInput;
  const found = savedCfg(folder, D, M, where);
  const saved = found && { ...found, applyBDecToInput: apply };
  const lpNorm = kind === 'relu' ? lpNormOf(folder, where) : 1; // checked before any tensor is made
  const tensors = new Map<string, Tensor>([
    ['encoder.weight', Tensor.from(transpose(W_enc, D, M), [M, D])],
    ['encoder.bias', Tensor.from(b_enc, [M])],
    ['W_dec', Tensor.from(W_dec, [M, D])],
    ['b_dec', Tensor.from(b_dec, [D])],
  ]);
  const base = { ...DEFAULT_SPARSE_CODER_CONFIG, numLatents: M, matryoshkaPrefixes: [] as number[], applyBDecToInput: apply };
  if (kind === 'relu') return { cfg: saved?.activation === 'relu' ? saved : { ...base, activation: 'relu', lpNorm }, dIn: D, tensors };
  const th = t.get('threshold')!;
  const shared = th.every((v) => v === th[0]);
  const arch = folder.cfg.architecture;
  const k = saved?.activation === 'batchtopk' ? saved.k : folder.cfg.k;
  const unitRows = rowNormsNear1(W_dec, M, D);
  if (saved?.activation === 'batchtopk' && !(shared && unitRows)) {
    for (const x of tensors.values()) x.dispose();
    throw new ConfigError(`${where}: metadata.sparsify_cfg says batchtopk, but the file's ${shared ? 'decoder rows are not unit norm' : 'threshold is not one value shared by every latent'} (not a folder saved from a batchtopk coder)`);
  }
  if (shared && unitRows && k !== undefined && Number.isFinite(k) && k > 0 && k <= M && (saved?.activation === 'batchtopk' || arch === 'batchtopk' || arch === 'matryoshka_batchtopk')) {
    tensors.set('topk_threshold', Tensor.from(new Float32Array([th[0]]), [1]));
    if (saved?.activation === 'batchtopk') return { cfg: saved, dIn: D, tensors };
    const lr = folder.cfg.extra.topk_threshold_lr ?? base.topkThresholdLr;
    const prefixes = arch === 'matryoshka_batchtopk' ? [...(folder.cfg.matryoshkaWidths ?? [])] : [];
    const cfg: SparseCoderConfig = { ...base, activation: 'batchtopk', k, topkThresholdLr: lr as number, matryoshkaPrefixes: prefixes };
    try {
      validateCoderConfig(cfg, `${where} cfg.json`);
    } catch (e) {
      for (const x of tensors.values()) x.dispose();
      throw e;
    }
    return { cfg, dIn: D, tensors };
  }
  for (let m = 0; m < M; m++)
    if (!(th[m] > 0)) {
      for (const x of tensors.values()) x.dispose();
      throw new ConfigError(`${where}: threshold[${m}] = ${th[m]} is not > 0, so it has no log_threshold to train; load it with loadSaeLensCoder`);
    }
  tensors.set('log_threshold', Tensor.from(th.map(Math.log), [M]));
  return { cfg: saved?.activation === 'jumprelu' ? saved : { ...base, activation: 'jumprelu' }, dIn: D, tensors };
}

/** SAELens standard training configs carry lp_norm (default 1.0; standard_sae.py). */
function lpNormOf(folder: SaeLensFolder, where: string): number {
  const p = folder.cfg.extra.lp_norm ?? 1;
  if (typeof p !== 'number' || !Number.isFinite(p) || p < 1) throw new ConfigError(`${where}: cfg.json lp_norm must be a finite number >= 1, got ${JSON.stringify(p)}`);
  return p;
}

function savedCfg(folder: SaeLensFolder, D: number, M: number, where: string): SparseCoderConfig | undefined {
  const s = folder.cfg.metadata.sparsify_cfg;
  if (s === undefined || s === null) return undefined;
  const at = `${where} metadata.sparsify_cfg`;
  if (typeof s !== 'object' || Array.isArray(s)) throw new ConfigError(`${at}: must be a JSON object (the coder's sparsify cfg.json), got ${JSON.stringify(s)}`);
  const { cfg, dIn } = coderConfigFromJson(s, at);
  if (dIn !== D || (cfg.numLatents || dIn * cfg.expansionFactor) !== M) return undefined;
  const problem = coderSpecProblem(cfg, M) ?? cfg.matryoshkaPrefixes.map((w) => (w > M ? `matryoshka_prefixes: ${w} is larger than num_latents=${M}` : undefined)).find((x) => x);
  if (problem) throw new ConfigError(`${at}: ${problem}`);
  return cfg;
}

function rowNormsNear1(W_dec: Float32Array, M: number, D: number): boolean {
  for (let m = 0; m < M; m++) {
    let q = 0;
    for (let d = 0; d < D; d++) q += W_dec[m * D + d] ** 2;
    if (Math.abs(Math.sqrt(q) - 1) > 1e-4) return false;
  }
  return true;
}
