/**
 * TransformerLens hook names as aliases of HF module outputs / inputs, per architecture, for a
 * HookedTransformer loaded with `from_pretrained_no_processing` (what SAELens trains with; its
 * runner default also keeps center_writing_weights off). Mapping from TransformerLens 2.16.1
 * (components/transformer_block.py, components/mlps/{mlp,gated_mlp}.py, rms_norm.py,
 * layer_norm.py, pretrained/weight_conversions/gemma.py; github.com/TransformerLensOrg/TransformerLens)
 * and SAELens 6.18's HookedSAETransformer for `mlp.hook_in`; table and caveats in docs/model.md.
 *
 * Each alias is `output` (the module's forward output, spliceable) or `input` (its first input,
 * capture only). Names with no HF tensor (the gain-free `x/rms(x)` of RMSNorm models) are
 * refused with the reason; names whose value changes under TransformerLens's default weight
 * processing carry `processed`, saying how.
 */
import type { ModelFamily } from './config.js';

export interface TlAlias {
  /** The TransformerLens hook name, e.g. `blocks.3.hook_resid_post`. */
  name: string;
  /** The HF module (relative to the base model) whose output or input it is. */
  module: string;
  source: 'output' | 'input';
  /** How `HookedTransformer.from_pretrained`'s default processing changes it (absent: unchanged). */
  processed?: string;
}

const CENTRED = 'center_writing_weights (TL default, LayerNorm models) subtracts the per-token mean over d_model';
const NO_BV = 'fold_value_biases (TL default) removes b_V from hook_z';

/** Per-layer pieces: HF module names and which norm/MLP naming the family uses. */
function layerTable(family: ModelFamily, L: number, parallel: boolean): [string, string, 'output' | 'input', string?][] {
  if (family === 'gpt2') {
    const p = `h.${L}`;
    return [
      ['hook_resid_pre', L === 0 ? 'drop' : `h.${L - 1}`, 'output', CENTRED],
      ['ln1.hook_normalized', `${p}.ln_1`, 'output', 'fold_ln (TL default) drops the LayerNorm gain and bias'],
      ['attn.hook_z', `${p}.attn.c_proj`, 'input', NO_BV],
      ['hook_attn_out', `${p}.attn`, 'output', CENTRED],
      ['hook_resid_mid', `${p}.ln_2`, 'input', CENTRED],
      ['ln2.hook_normalized', `${p}.ln_2`, 'output', 'fold_ln (TL default) drops the LayerNorm gain and bias'],
      ['mlp.hook_in', `${p}.ln_2`, 'output'],
      ['mlp.hook_pre', `${p}.mlp.c_fc`, 'output'],
      ['mlp.hook_post', `${p}.mlp.act`, 'output'],
      ['hook_mlp_out', `${p}.mlp`, 'output', CENTRED],
      ['hook_resid_post', p, 'output', CENTRED],
    ];
  }
  if (family === 'neox') {
    const p = `layers.${L}`;
    const rows: [string, string, 'output' | 'input', string?][] = [
      ['hook_resid_pre', L === 0 ? 'emb_dropout' : `layers.${L - 1}`, 'output', CENTRED],
      ['ln1.hook_normalized', `${p}.input_layernorm`, 'output', 'fold_ln (TL default) drops the LayerNorm gain and bias'],
      ['attn.hook_z', `${p}.attention.dense`, 'input', NO_BV],
      ['hook_attn_out', `${p}.attention`, 'output', CENTRED],
      ['ln2.hook_normalized', `${p}.post_attention_layernorm`, 'output', 'fold_ln (TL default) drops the LayerNorm gain and bias'],
      ['mlp.hook_in', `${p}.post_attention_layernorm`, 'output'],
      ['mlp.hook_pre', `${p}.mlp.dense_h_to_4h`, 'output'],
      ['mlp.hook_post', `${p}.mlp.act`, 'output'],
      ['hook_mlp_out', `${p}.mlp`, 'output', CENTRED],
      ['hook_resid_post', p, 'output', CENTRED],
    ];
    // Parallel attention/MLP (Pythia; TL always loads GPT-NeoX so) has no resid_mid.
    if (!parallel) rows.splice(4, 0, ['hook_resid_mid', `${p}.post_attention_layernorm`, 'input', CENTRED]);
    return rows;
  }
  const p = `layers.${L}`;
  const g2 = family === 'gemma2';
  const preMlpNorm = g2 ? `${p}.pre_feedforward_layernorm` : `${p}.post_attention_layernorm`;
  const rows: [string, string, 'output' | 'input', string?][] = [
    ['hook_resid_pre', L === 0 ? `${p}` : `layers.${L - 1}`, L === 0 ? 'input' : 'output'],
    ['attn.hook_z', `${p}.self_attn.o_proj`, 'input'],
    ['hook_attn_out', g2 ? `${p}.post_attention_layernorm` : `${p}.self_attn`, 'output'],
    ['hook_resid_mid', preMlpNorm, 'input'],
    ['mlp.hook_in', preMlpNorm, 'output'],
    ['mlp.hook_pre', `${p}.mlp.gate_proj`, 'output'],
    ['mlp.hook_pre_linear', `${p}.mlp.up_proj`, 'output'],
    ['mlp.hook_post', `${p}.mlp.down_proj`, 'input'],
    ['hook_mlp_out', g2 ? `${p}.post_feedforward_layernorm` : `${p}.mlp`, 'output'],
    ['hook_resid_post', p, 'output'],
  ];
  // Llama / Qwen2 layer 0: the embedding output is layers.0's input; capture it as an output.
  if (L === 0 && family === 'llama') rows[0] = ['hook_resid_pre', 'embed_tokens', 'output'];
  return rows;
}

/** Every alias of a model, in layer order (model-level names first, ln_final last). */
export function tlAliases(family: ModelFamily, numLayers: number, parallelResidual: boolean): TlAlias[] {
  const out: TlAlias[] = [];
  const add = (name: string, module: string, source: 'output' | 'input', processed?: string) =>
    out.push({ name, module, source, ...(processed ? { processed } : {}) });
  if (family === 'gpt2') {
    add('hook_embed', 'wte', 'output', CENTRED);
    add('hook_pos_embed', 'wpe', 'output', CENTRED);
  } else if (family === 'neox') add('hook_embed', 'embed_in', 'output', CENTRED);
  else if (family === 'llama') add('hook_embed', 'embed_tokens', 'output');
  // Gemma: TL bakes sqrt(d_model) into W_E, HF multiplies inside the model: layers.0's input.
  else add('hook_embed', 'layers.0', 'input');
  for (let L = 0; L < numLayers; L++)
    for (const [hook, module, source, processed] of layerTable(family, L, parallelResidual)) add(`blocks.${L}.${hook}`, module, source, processed);
  if (family === 'gpt2') add('ln_final.hook_normalized', 'ln_f', 'output', 'fold_ln (TL default) drops the LayerNorm gain and bias');
  if (family === 'neox') add('ln_final.hook_normalized', 'final_layer_norm', 'output', 'fold_ln (TL default) drops the LayerNorm gain and bias');
  return out;
}

/** Why a TransformerLens name has no HF tensor on this family (undefined: it has one, or it is not a TL name we know). */
export function tlUnavailable(family: ModelFamily, name: string, parallelResidual: boolean): string | undefined {
  const rms = family !== 'gpt2' && family !== 'neox';
  if (rms && /^(blocks\.\d+\.ln[12]|ln_final)\.hook_(normalized|scale)$/.test(name))
    return `'${name}' is RMSNorm's gain-free x/rms(x) in TransformerLens: no HF module outputs it (capture the norm's output, or its input, instead)`;
  if (/^blocks\.\d+\.ln[12]\.hook_scale$|^ln_final\.hook_scale$/.test(name)) return `'${name}' (the norm's scale) is not a module output`;
  if (/^blocks\.\d+\.hook_resid_mid$/.test(name) && family === 'neox' && parallelResidual)
    return `'${name}' does not exist for parallel attention/MLP models (GPT-NeoX / Pythia)`;
  if (/^blocks\.\d+\.attn\.hook_(q|k|v|attn_scores|pattern|result)$/.test(name)) return `'${name}' is inside the attention: not captured (attn.hook_z, hook_attn_out are)`;
  if (/^blocks\.\d+\.mlp\.hook_pre_linear$/.test(name) && (family === 'gpt2' || family === 'neox')) return `'${name}' exists only for gated MLPs`;
  if (name === 'hook_pos_embed' && family !== 'gpt2') return `'${name}' exists only for models with learned positions (GPT-2)`;
  return undefined;
}

/** True when the string is shaped like a TransformerLens hook name. */
export function looksLikeTlName(name: string): boolean {
  return /^(blocks\.|hook_|ln_final\.)/.test(name);
}
