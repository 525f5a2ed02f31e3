/**
 * Finds a checkpoint's safetensors files (single `model.safetensors` or sharded through
 * `model.safetensors.index.json`) and maps its tensor names onto the roles of the native forward.
 * Only the tensors the forward uses are mapped (zero-copy views of the files); buffers such as
 * GPT-2's `attn.bias` masks are never read.
 */
import { jsonErrorSummary } from '../json-error.js';
import { existsSync, readFileSync } from 'node:fs';
import { join, normalize, isAbsolute } from 'node:path';

import { FileFormatError } from '../errors.js';
import { loadSafetensors, readSafetensorsHeader } from '../safetensors.js';
import { Tensor, type DType } from '../tensor.js';
import type { ModelFamily, ParsedModelConfig } from './config.js';

/** Where each tensor name lives. */
export function checkpointIndex(dir: string): Map<string, string> {
  const single = join(dir, 'model.safetensors');
  const indexPath = join(dir, 'model.safetensors.index.json');
  const where = new Map<string, string>();
  if (existsSync(single)) {
    for (const name of readSafetensorsHeader(single).tensors.keys()) where.set(name, single);
    return where;
  }
  if (existsSync(indexPath)) {
    let index: { weight_map?: Record<string, unknown> };
    try {
      index = JSON.parse(readFileSync(indexPath, 'utf-8'));
    } catch (e) {
      throw new FileFormatError(`${indexPath}: ${jsonErrorSummary(e)}`);
    }
    const map = index?.weight_map;
    if (!map || typeof map !== 'object') throw new FileFormatError(`${indexPath}: has no 'weight_map' object`);
    const headers = new Map<string, Set<string>>();
    for (const [name, file] of Object.entries(map)) {
      if (typeof file !== 'string' || isAbsolute(file) || normalize(file).startsWith('..'))
        throw new FileFormatError(`${indexPath}: weight_map['${name}'] is not a file inside the folder: ${JSON.stringify(file)}`);
      const path = join(dir, file);
      if (!headers.has(path)) {
        if (!existsSync(path)) throw new FileFormatError(`${indexPath}: shard ${file} (for '${name}') is missing`);
        headers.set(path, new Set(readSafetensorsHeader(path).tensors.keys()));
      }
      if (!headers.get(path)!.has(name)) throw new FileFormatError(`${path}: has no tensor '${name}' although the index lists it there`);
      where.set(name, path);
    }
    return where;
  }
  const bin = ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'model.pt'].find((f) => existsSync(join(dir, f)));
  throw new FileFormatError(
    bin
      ? `${dir}: has only ${bin}; sparsify reads safetensors checkpoints (model.safetensors or model.safetensors.index.json)`
      : `${dir}: no model.safetensors or model.safetensors.index.json`,
  );
}

const EMBED: Record<ModelFamily, string> = { gpt2: 'wte', neox: 'embed_in', llama: 'embed_tokens', gemma: 'embed_tokens', gemma2: 'embed_tokens' };
const PREFIXES: Record<ModelFamily, string[]> = {
  gpt2: ['transformer.', ''],
  neox: ['gpt_neox.', ''],
  llama: ['model.', ''],
  gemma: ['model.', ''],
  gemma2: ['model.', ''],
};

/** Role name (as the native side reads it) -> checkpoint tensor name, with required flags. */
type Plan = { role: string; name: string; required: boolean }[];

function layerPlan(family: ModelFamily, p: string): Plan {
  const r = (role: string, name: string, required = true) => ({ role, name: p + name, required });
  switch (family) {
    case 'gpt2':
      return [
        r('ln1W', 'ln_1.weight'), r('ln1B', 'ln_1.bias'), r('ln2W', 'ln_2.weight'), r('ln2B', 'ln_2.bias'),
        r('qkvW', 'attn.c_attn.weight'), r('qkvB', 'attn.c_attn.bias', false),
        r('oW', 'attn.c_proj.weight'), r('oB', 'attn.c_proj.bias', false),
        r('fcW', 'mlp.c_fc.weight'), r('fcB', 'mlp.c_fc.bias', false),
        r('downW', 'mlp.c_proj.weight'), r('downB', 'mlp.c_proj.bias', false),
      ];
    case 'neox':
      return [
        r('ln1W', 'input_layernorm.weight'), r('ln1B', 'input_layernorm.bias'),
        r('ln2W', 'post_attention_layernorm.weight'), r('ln2B', 'post_attention_layernorm.bias'),
        r('qkvW', 'attention.query_key_value.weight'), r('qkvB', 'attention.query_key_value.bias', false),
        r('oW', 'attention.dense.weight'), r('oB', 'attention.dense.bias', false),
        r('fcW', 'mlp.dense_h_to_4h.weight'), r('fcB', 'mlp.dense_h_to_4h.bias', false),
        r('downW', 'mlp.dense_4h_to_h.weight'), r('downB', 'mlp.dense_4h_to_h.bias', false),
      ];
    default: {
      const plan = [
        r('ln1W', 'input_layernorm.weight'), r('ln2W', 'post_attention_layernorm.weight'),
        r('qW', 'self_attn.q_proj.weight'), r('qB', 'self_attn.q_proj.bias', false),
        r('kW', 'self_attn.k_proj.weight'), r('kB', 'self_attn.k_proj.bias', false),
        r('vW', 'self_attn.v_proj.weight'), r('vB', 'self_attn.v_proj.bias', false),
        r('oW', 'self_attn.o_proj.weight'), r('oB', 'self_attn.o_proj.bias', false),
        r('gateW', 'mlp.gate_proj.weight'), r('gateB', 'mlp.gate_proj.bias', false),
        r('upW', 'mlp.up_proj.weight'), r('upB', 'mlp.up_proj.bias', false),
        r('downW', 'mlp.down_proj.weight'), r('downB', 'mlp.down_proj.bias', false),
      ];
      if (family === 'gemma2')
        plan.push(r('preFfW', 'pre_feedforward_layernorm.weight'), r('postFfW', 'post_feedforward_layernorm.weight'));
      return plan;
    }
  }
}

export interface NativeWeights {
  embed: Tensor;
  posEmbed?: Tensor;
  lmHead?: Tensor;
  finalW: Tensor;
  finalB?: Tensor;
  layers: Record<string, Tensor>[];
}

export interface LoadedWeights {
  weights: NativeWeights;
  /** Every tensor handed to the native model (for dispose). */
  tensors: Tensor[];
  /** dtype of the embedding matrix (the checkpoint's dtype). */
  dtype: DType;
}

/** Loads the tensors the forward needs, as views of the files (converted once if `dtype` differs). */
export async function loadWeights(dir: string, parsed: ParsedModelConfig, dtype?: DType): Promise<LoadedWeights> {
  const where = checkpointIndex(dir);
  const { family, spec } = parsed;
  const prefix = PREFIXES[family].find((p) => where.has(`${p}${EMBED[family]}.weight`));
  if (prefix === undefined)
    throw new FileFormatError(
      `${dir}: no embedding tensor (${PREFIXES[family].map((p) => `${p}${EMBED[family]}.weight`).join(' or ')}) for ${parsed.architecture}`,
    );
  const model: Plan = [{ role: 'embed', name: `${prefix}${EMBED[family]}.weight`, required: true }];
  const fin = family === 'gpt2' ? 'ln_f' : family === 'neox' ? 'final_layer_norm' : 'norm';
  model.push({ role: 'finalW', name: `${prefix}${fin}.weight`, required: true });
  if (spec.norm === 'layernorm') model.push({ role: 'finalB', name: `${prefix}${fin}.bias`, required: true });
  if (family === 'gpt2') model.push({ role: 'posEmbed', name: `${prefix}wpe.weight`, required: true });
  const headName = family === 'neox' ? 'embed_out.weight' : 'lm_head.weight';
  if (parsed.causalLM && !parsed.tieWordEmbeddings)
    model.push({ role: 'lmHead', name: headName, required: true });
  const listName = family === 'gpt2' ? 'h' : 'layers';
  const layerPlans = Array.from({ length: spec.layers }, (_, i) => layerPlan(family, `${prefix}${listName}.${i}.`));

  // Group the wanted names by file so each file is mapped once.
  const byFile = new Map<string, string[]>();
  const need = (e: Plan[number]) => {
    const file = where.get(e.name);
    if (!file) {
      if (e.required) throw new FileFormatError(`${dir}: checkpoint has no tensor '${e.name}' (needed by ${parsed.architecture})`);
      return;
    }
    if (!byFile.has(file)) byFile.set(file, []);
    byFile.get(file)!.push(e.name);
  };
  model.forEach(need);
  layerPlans.forEach((pl) => pl.forEach(need));
  const loaded = new Map<string, Tensor>();
  for (const [file, names] of byFile) for (const [n, t] of loadSafetensors(file, { names })) loaded.set(n, t);

  const tensors: Tensor[] = [];
  const take = async (name: string, matrix: boolean): Promise<Tensor | undefined> => {
    let t = loaded.get(name);
    if (!t) return undefined;
    if (t.dtype === 'int32') throw new FileFormatError(`${dir}: tensor '${name}' has an integer dtype`);
    if (matrix && dtype && t.dtype !== dtype) {
      const c = await t.to(dtype);
      t.dispose();
      t = c;
    }
    tensors.push(t);
    return t;
  };
  const isMatrix = (role: string) => /W$/.test(role) && !/^(ln|final|preFf|postFf)/.test(role) || role === 'embed' || role === 'posEmbed' || role === 'lmHead';
  const weights: Partial<NativeWeights> = { layers: [] };
  for (const e of model) (weights as Record<string, unknown>)[e.role] = await take(e.name, isMatrix(e.role));
  for (const pl of layerPlans) {
    const layer: Record<string, Tensor> = {};
    for (const e of pl) {
      const t = await take(e.name, isMatrix(e.role));
      if (t) layer[e.role] = t;
    }
    weights.layers!.push(layer);
  }
  if (parsed.causalLM && parsed.tieWordEmbeddings) weights.lmHead = weights.embed;
  return { weights: weights as NativeWeights, tensors, dtype: weights.embed!.dtype };
}
