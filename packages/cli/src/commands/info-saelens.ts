/** `sparsify info` row of a SAELens coder folder (loaded first, so a listed folder loads). */
import { readSafetensorsHeader, readSaeLensConfig, SAELENS_WEIGHTS_FILE } from '@sparsify/core';
import { statSync } from 'node:fs';
import { join } from 'node:path';

import { loadLocalCoder } from './load-coder.js';

export async function saeLensInfoRow(name: string, dir: string): Promise<string[]> {
  (await loadLocalCoder(dir, 'cpu')).dispose();
  const cfg = readSaeLensConfig(dir);
  const file = join(dir, SAELENS_WEIGHTS_FILE);
  const dtype = [...new Set([...readSafetensorsHeader(file).tensors.values()].map((t) => t.dtype))].join('/');
  const k = cfg.k === undefined ? '-' : String(cfg.k);
  return [name, `saelens ${cfg.architecture}`, String(cfg.dIn), String(cfg.dSae), k, cfg.architecture === 'standard' ? 'relu' : cfg.architecture, dtype, `${(statSync(file).size / 1e6).toFixed(2)} MB`];
}
