/**
 * A SparseCoder of a SAELens kind written as a SAELens inference folder, as SAELens 6.18's
 * save_inference_model does: relu → `standard`; jumprelu → `jumprelu` with
 * threshold = exp(log_threshold) (jumprelu_sae.py); batchtopk / Matryoshka → `jumprelu` with the
 * decoder norms folded in (W_enc·n, b_enc·n, W_dec/n) and one shared threshold = topk_threshold
 * (batchtopk_sae.py, save_inference_model), so the file reads back as a ThresholdCoder;
 * Matryoshka TopK → `topk` with n folded in (SAELens's TopK inference of h·n per row).
 */
import { coderConfigJson, type SparseCoderConfig } from '../config.js';
import { ConfigError, ValueError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { ThresholdCoder } from '../threshold-coder.js';
import { writeSparsifyAsSaeLens, writeThresholdCoderAsSaeLens, type SaeLensSaveOptions } from './format.js';

export function writeKindAsSaeLens(dir: string, cfg: SparseCoderConfig, dIn: number, params: Map<string, Tensor>, opts: SaeLensSaveOptions = {}): void {
  const W_dec = params.get('W_dec');
  if (!W_dec) throw new ValueError("saveToDisk(format 'saelens'): this coder has no decoder (loaded with decoder: false)");
  const M = W_dec.shape[0];
  const enc = params.get('encoder.weight')!.toFloat32Array(), bEnc = params.get('encoder.bias')!.toFloat32Array();
  const dec = W_dec.toFloat32Array(), bDec = params.get('b_dec')!.toFloat32Array();
  const t = new Map<string, Tensor>();
  let kind: 'relu' | 'jumprelu' = 'jumprelu';
  const foldNorms = () => {
    for (let m = 0; m < M; m++) {
      let q = 0;
      for (let d = 0; d < dIn; d++) q += dec[m * dIn + d] ** 2;
      const n = Math.sqrt(q);
      if (!(n > 0)) throw new ValueError(`saveToDisk(format 'saelens'): decoder row ${m} has norm 0; its decoder norm cannot be folded into the encoder`);
      for (let d = 0; d < dIn; d++) {
        enc[m * dIn + d] *= n;
        dec[m * dIn + d] /= n;
      }
      bEnc[m] *= n;
    }
  };
  if (cfg.activation === 'topk') {
    if (!cfg.applyBDecToInput) throw new ConfigError("saveToDisk(format 'saelens'): a Matryoshka TopK coder with apply_b_dec_to_input false has no SAELens topk folder here");
    foldNorms();
    const folded = new Map<string, Tensor>([
      ['encoder.weight', Tensor.from(enc, [M, dIn])],
      ['encoder.bias', Tensor.from(bEnc, [M])],
      ['W_dec', Tensor.from(dec, [M, dIn])],
      ['b_dec', Tensor.from(bDec, [dIn])],
    ]);
    try {
      return writeSparsifyAsSaeLens(dir, cfg, dIn, folded, opts);
    } finally {
      for (const x of folded.values()) x.dispose();
    }
  }
  if (cfg.activation === 'relu') kind = 'relu';
  else if (cfg.activation === 'jumprelu') t.set('threshold', Tensor.from(params.get('log_threshold')!.toFloat32Array().map(Math.exp), [M]));
  else {
    // Fold n into the encoder so that the file's JumpReLU sees h·n, the units of θ.
    const theta = params.get('topk_threshold')!.toFloat32Array()[0];
    foldNorms();
    t.set('threshold', Tensor.from(new Float32Array(M).fill(theta), [M]));
  }
  t.set('encoder.weight', Tensor.from(enc, [M, dIn]));
  t.set('encoder.bias', Tensor.from(bEnc, [M]));
  t.set('W_dec', Tensor.from(dec, [M, dIn]));
  t.set('b_dec', Tensor.from(bDec, [dIn]));
  const coder = new ThresholdCoder(kind, t, { applyBDecToInput: cfg.applyBDecToInput, metadata: { sparsify_cfg: JSON.parse(coderConfigJson(cfg, dIn)) as Record<string, unknown> } });
  try {
    writeThresholdCoderAsSaeLens(dir, coder, opts);
  } finally {
    coder.dispose();
  }
}
