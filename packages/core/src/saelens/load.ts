/**
 * loadSaeLensCoder: any SAELens coder folder we can run, as the coder class that computes its
 * formulas (TopK -> SparseCoder, standard / jumprelu / gated / batchtopk -> ThresholdCoder).
 */
import { SparseCoder } from '../sparse-coder.js';
import type { ThresholdCoder } from '../threshold-coder.js';
import { readSaeLensDir, saeLensToSparsify, saeLensToThresholdCoder, type SaeLensLoadOptions } from './format.js';

export async function loadSaeLensCoder(dir: string, opts: SaeLensLoadOptions = {}): Promise<SparseCoder | ThresholdCoder> {
  const folder = await readSaeLensDir(dir);
  if (folder.cfg.architecture === 'topk') {
    const p = saeLensToSparsify(folder, opts, dir);
    return SparseCoder.fromParams(p.cfg, p.dIn, p.tensors);
  }
  return saeLensToThresholdCoder(folder, opts, dir);
}
