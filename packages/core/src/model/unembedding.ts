/**
 * The unembedding of a causal LM and its final norm's elementwise part, read from the checkpoint:
 * what a latent's decoder direction does to the logits (feature browsers' "logit effects").
 * Read on demand (not kept by the forward's native model, which holds its own views).
 */
import { FileFormatError } from '../errors.js';
import { loadSafetensors } from '../safetensors.js';
import { Tensor } from '../tensor.js';
import { parseModelConfig } from './config.js';
import { checkpointIndex } from './weights.js';

export interface Unembedding {
  /** [vocab, hidden] (the lm_head / tied embedding; the file's dtype). */
  weight: Tensor;
  /** The final norm: 'layernorm' (centres, then scales), 'rms' (scales by weight), 'rms1p' (Gemma: by 1 + weight). */
  normKind: 'layernorm' | 'rms' | 'rms1p';
  /** The final norm's gain [hidden] as float32. */
  normWeight: Float32Array;
}

const CANDIDATES: Record<string, { head: string[]; embed: string[]; norm: string[] }> = {
  gpt2: { head: ['lm_head.weight'], embed: ['transformer.wte.weight', 'wte.weight'], norm: ['transformer.ln_f.weight', 'ln_f.weight'] },
  neox: { head: ['embed_out.weight'], embed: ['gpt_neox.embed_in.weight', 'embed_in.weight'], norm: ['gpt_neox.final_layer_norm.weight', 'final_layer_norm.weight'] },
  llama: { head: ['lm_head.weight'], embed: ['model.embed_tokens.weight', 'embed_tokens.weight'], norm: ['model.norm.weight', 'norm.weight'] },
};

/** Reads the unembedding of the model in `dir` (its config.json already parsed into `config`). */
export function readUnembedding(dir: string, config: Record<string, unknown>): Unembedding {
  const parsed = parseModelConfig(config);
  const names = CANDIDATES[parsed.family] ?? CANDIDATES.llama;
  const where = checkpointIndex(dir);
  const pick = (list: string[]) => list.find((n) => where.has(n));
  const head = (!parsed.tieWordEmbeddings && pick(names.head)) || pick(names.embed) || pick(names.head);
  const norm = pick(names.norm);
  if (!head) throw new FileFormatError(`${dir}: no unembedding tensor (${[...names.head, ...names.embed].join(', ')})`);
  if (!norm) throw new FileFormatError(`${dir}: no final norm weight (${names.norm.join(', ')})`);
  const weight = loadSafetensors(where.get(head)!, { names: [head] }).get(head)!;
  const nt = loadSafetensors(where.get(norm)!, { names: [norm] }).get(norm)!;
  const normWeight = nt.toFloat32Array();
  nt.dispose();
  if (weight.shape.length !== 2 || weight.shape[1] !== normWeight.length) {
    weight.dispose();
    throw new FileFormatError(`${dir}: unembedding '${head}' has shape [${weight.shape}], expected [vocab, ${normWeight.length}]`);
  }
  return { weight, normKind: parsed.spec.norm, normWeight };
}
