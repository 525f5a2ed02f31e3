/**
 * Export of a features output as SAEDashboard's Neuronpedia batch JSON (`batch-N.json`, the
 * layout its NeuronpediaConverter writes and Neuronpedia's importer reads; field list in
 * docs/features.md). One folder per coder, 128 features per file as SAEDashboard's default.
 * Not computed by us, left empty: the correlated neurons / features tables, DFA fields, vectors.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { writeFileAtomic } from '@sparsify/core';

import type { ContextExample, FeatureRecord } from './feature-record.js';
import { FeatureFile, readFeaturesIndex, type FeaturesIndex } from './features-output.js';
import { exportToken, rawVocab } from './token-strings.js';

export const NEURONPEDIA_BATCH_SIZE = 128;

const r5 = (x: number) => Math.round(x * 1e5) / 1e5;

/** Neuronpedia model ids: lowercase letters, digits, '-' and '_', at most 128 characters. */
export function neuronpediaModelId(model: string): string {
  const base = model.replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? 'model';
  return (base.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '') || 'model').slice(0, 128);
}

/** The source set name: the kind of hookpoint plus `-sparsify` (Neuronpedia's `{layer}-{set}` source id). */
export function neuronpediaSetName(hookpoint: string, transcode: boolean): string {
  const kind = transcode ? 'tc' : /mlp/.test(hookpoint) ? 'mlp' : /attn|attention/.test(hookpoint) ? 'att' : 'res';
  return `${kind}-sparsify`;
}

export function layerOf(hookpoint: string): number {
  const m = /(\d+)/.exec(hookpoint);
  return m ? Number(m[1]) : 0;
}

export interface ExportResult {
  files: string[];
  features: number;
}

/** Writes `outDir/<name>/batch-N.json` for every coder of the features output in `featuresDir`. */
export function exportNeuronpedia(featuresDir: string, outDir: string, opts: { modelId?: string } = {}): ExportResult {
  const index = readFeaturesIndex(featuresDir);
  const vocab = exportVocab(featuresDir, index);
  const files: string[] = [];
  let features = 0;
  for (const h of index.hookpoints) {
    const file = new FeatureFile(featuresDir, h.name);
    const dir = join(outDir, h.name);
    mkdirSync(dir, { recursive: true });
    for (let lo = 0, b = 0; lo < file.numLatents; lo += NEURONPEDIA_BATCH_SIZE, b++) {
      const feats = [];
      for (let i = lo; i < Math.min(file.numLatents, lo + NEURONPEDIA_BATCH_SIZE); i++) feats.push(exportFeature(file.read(i), index, vocab));
      const batch = {
        model_id: opts.modelId ?? neuronpediaModelId(index.model),
        layer: layerOf(h.hookpoint),
        sae_set: neuronpediaSetName(h.hookpoint, h.transcode),
        sae_id_suffix: null,
        features: feats,
      };
      const path = join(dir, `batch-${b}.json`);
      writeFileAtomic(path, [JSON.stringify(batch)]);
      files.push(path);
      features += feats.length;
    }
  }
  return { files, features };
}

function exportVocab(dir: string, index: FeaturesIndex): string[] {
  const tokPath = index.tokenizer ? join(dir, index.tokenizer) : undefined;
  if (tokPath && existsSync(tokPath)) return rawVocab(JSON.parse(readFileSync(tokPath, 'utf-8')), index.vocab_size).map(exportToken);
  return Array.from({ length: index.vocab_size }, (_, i) => `<${i}>`);
}

function centres(min: number, max: number, n: number): number[] {
  return Array.from({ length: n }, (_, j) => r5(min + ((j + 0.5) * (max - min)) / n));
}

export function exportFeature(rec: FeatureRecord, index: FeaturesIndex, vocab: readonly string[]) {
  const str = (id: number) => vocab[id] ?? '<|outofrange|>';
  const activation = (ex: ContextExample, binMin: number, binMax: number, binContains: number) => ({
    bin_min: binMin,
    bin_max: binMax,
    bin_contains: binContains,
    tokens: ex.tokens.map(str),
    values: ex.values.map(r5),
    qualifying_token_index: ex.pos - ex.start,
  });
  const activations = [
    ...rec.top.map((ex) => activation(ex, -1, r5(rec.max_act), -1)),
    ...rec.quantiles.flatMap((g) => g.examples.map((ex) => activation(ex, r5(g.lo), r5(g.hi), r5(g.contains)))),
  ];
  const lh = rec.logits.histogram;
  return {
    feature_index: rec.index,
    neuron_alignment_indices: rec.neuron_alignment.indices,
    neuron_alignment_values: rec.neuron_alignment.values.map(r5),
    neuron_alignment_l1: rec.neuron_alignment.l1.map(r5),
    correlated_neurons_indices: [] as number[],
    correlated_neurons_pearson: [] as number[],
    correlated_neurons_l1: [] as number[],
    correlated_features_indices: [] as number[],
    correlated_features_pearson: [] as number[],
    correlated_features_l1: [] as number[],
    neg_str: rec.logits.neg.map((x) => str(x.token)),
    neg_values: rec.logits.neg.map((x) => r5(x.value)),
    pos_str: rec.logits.pos.map((x) => str(x.token)),
    pos_values: rec.logits.pos.map((x) => r5(x.value)),
    frac_nonzero: rec.frac_nonzero,
    freq_hist_data_bar_heights: rec.histogram.counts,
    freq_hist_data_bar_values: centres(rec.histogram.min, rec.histogram.max, rec.histogram.counts.length),
    logits_hist_data_bar_heights: lh ? lh.counts : [],
    logits_hist_data_bar_values: lh ? centres(lh.min, lh.max, lh.counts.length) : [],
    n_prompts_total: index.rows,
    n_tokens_in_prompt: index.ctx_len,
    dataset: index.dataset,
    decoder_weights_dist: [] as number[],
    activations,
    vector: [] as number[],
  };
}
