// The SAEDashboard / Neuronpedia `batch-N.json` layout as documented (SAEDashboard's
// NeuronpediaDashboardBatch / Feature / Activation dataclasses, whose constructors take exactly
// these keys, and Neuronpedia's upload route, which needs len(tokens) == len(values) <= 1024),
// and a validator that lists every violation.

type Kind = 'int' | 'number' | 'string' | 'string|null' | 'int[]' | 'number[]' | 'string[]' | 'object[]';

export const BATCH_FIELDS: Record<string, Kind> = {
  model_id: 'string',
  layer: 'int',
  sae_set: 'string',
  sae_id_suffix: 'string|null',
  features: 'object[]',
};

export const FEATURE_FIELDS: Record<string, Kind> = {
  feature_index: 'int',
  neuron_alignment_indices: 'int[]',
  neuron_alignment_values: 'number[]',
  neuron_alignment_l1: 'number[]',
  correlated_neurons_indices: 'int[]',
  correlated_neurons_pearson: 'number[]',
  correlated_neurons_l1: 'number[]',
  correlated_features_indices: 'int[]',
  correlated_features_pearson: 'number[]',
  correlated_features_l1: 'number[]',
  neg_str: 'string[]',
  neg_values: 'number[]',
  pos_str: 'string[]',
  pos_values: 'number[]',
  frac_nonzero: 'number',
  freq_hist_data_bar_heights: 'number[]',
  freq_hist_data_bar_values: 'number[]',
  logits_hist_data_bar_heights: 'number[]',
  logits_hist_data_bar_values: 'number[]',
  n_prompts_total: 'int',
  n_tokens_in_prompt: 'int',
  dataset: 'string',
  decoder_weights_dist: 'number[]',
  activations: 'object[]',
  vector: 'number[]',
};

export const ACTIVATION_FIELDS: Record<string, Kind> = {
  bin_min: 'number',
  bin_max: 'number',
  bin_contains: 'number',
  tokens: 'string[]',
  values: 'number[]',
  qualifying_token_index: 'int',
};

function check(kind: Kind, v: unknown): boolean {
  const num = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  switch (kind) {
    case 'int':
      return Number.isInteger(v);
    case 'number':
      return num(v);
    case 'string':
      return typeof v === 'string';
    case 'string|null':
      return v === null || typeof v === 'string';
    case 'int[]':
      return Array.isArray(v) && v.every((x) => Number.isInteger(x));
    case 'number[]':
      return Array.isArray(v) && v.every(num);
    case 'string[]':
      return Array.isArray(v) && v.every((x) => typeof x === 'string');
    case 'object[]':
      return Array.isArray(v) && v.every((x) => x && typeof x === 'object' && !Array.isArray(x));
  }
}

function fields(where: string, obj: Record<string, unknown>, spec: Record<string, Kind>, errors: string[]) {
  for (const k of Object.keys(obj)) if (!(k in spec)) errors.push(`${where}: unknown key ${k}`);
  for (const [k, kind] of Object.entries(spec)) {
    if (!(k in obj)) errors.push(`${where}: missing ${k}`);
    else if (!check(kind, obj[k])) errors.push(`${where}.${k}: not ${kind}`);
  }
}

/** Every violation of the documented layout (empty when valid). */
export function validateBatch(batch: unknown): string[] {
  const errors: string[] = [];
  if (!batch || typeof batch !== 'object') return ['batch: not an object'];
  const b = batch as Record<string, unknown>;
  fields('batch', b, BATCH_FIELDS, errors);
  if (typeof b.model_id === 'string' && !/^[a-z0-9_-]{1,128}$/.test(b.model_id)) errors.push(`model_id ${b.model_id}: not a Neuronpedia model id`);
  for (const [fi, f] of ((b.features as Record<string, unknown>[]) ?? []).entries()) {
    const w = `features[${fi}]`;
    fields(w, f, FEATURE_FIELDS, errors);
    const len = (k: string) => (Array.isArray(f[k]) ? (f[k] as unknown[]).length : -1);
    if (len('pos_str') !== len('pos_values') || len('neg_str') !== len('neg_values')) errors.push(`${w}: logit strings and values differ in length`);
    if (len('freq_hist_data_bar_heights') !== len('freq_hist_data_bar_values')) errors.push(`${w}: freq histogram lengths differ`);
    if (len('logits_hist_data_bar_heights') !== len('logits_hist_data_bar_values')) errors.push(`${w}: logits histogram lengths differ`);
    const fn = f.frac_nonzero as number;
    if (!(fn >= 0 && fn <= 1)) errors.push(`${w}.frac_nonzero ${fn}: outside [0, 1]`);
    const pv = f.pos_values as number[], nv = f.neg_values as number[];
    if (pv?.some((x, j) => j > 0 && x > pv[j - 1])) errors.push(`${w}.pos_values: not descending`);
    if (nv?.some((x, j) => j > 0 && x < nv[j - 1])) errors.push(`${w}.neg_values: not ascending`);
    let seenInterval = false;
    let lastBinMax = Infinity;
    for (const [ai, a] of ((f.activations as Record<string, unknown>[]) ?? []).entries()) {
      const wa = `${w}.activations[${ai}]`;
      fields(wa, a, ACTIVATION_FIELDS, errors);
      const tokens = a.tokens as string[], values = a.values as number[];
      if (!Array.isArray(tokens) || !Array.isArray(values)) continue;
      if (tokens.length !== values.length) errors.push(`${wa}: ${tokens.length} tokens but ${values.length} values`);
      if (tokens.length < 1 || tokens.length > 1024) errors.push(`${wa}: ${tokens.length} tokens (1..1024 allowed)`);
      if (tokens.some((t) => t.includes('\u0000'))) errors.push(`${wa}: a token holds NUL`);
      const q = a.qualifying_token_index as number;
      if (!(q >= 0 && q < tokens.length)) errors.push(`${wa}.qualifying_token_index ${q}: outside the tokens`);
      const top = a.bin_min === -1 && a.bin_contains === -1;
      if (top && seenInterval) errors.push(`${wa}: a top activation after an interval`);
      if (!top) {
        seenInterval = true;
        const bmax = a.bin_max as number;
        if (bmax > lastBinMax) errors.push(`${wa}: intervals not highest first`);
        lastBinMax = bmax;
        const bc = a.bin_contains as number;
        if (!(bc >= 0 && bc <= 1)) errors.push(`${wa}.bin_contains ${bc}: outside [0, 1]`);
        const v = values[q];
        if (!((a.bin_min as number) - 1e-4 <= v && v <= bmax + 1e-4)) errors.push(`${wa}: qualifying value ${v} outside [${a.bin_min}, ${bmax}]`);
      }
    }
  }
  return errors;
}
