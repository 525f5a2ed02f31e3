/**
 * The module a coder is spliced into: its hookpoint, or for a TransformerLens name the HF module
 * whose output it aliases (LanguageModel.moduleOf). Input aliases cannot be spliced.
 */
import { ValueError } from '@sparsify/core';

export interface ModuleResolver {
  moduleOf?(name: string): { module: string; source: 'output' | 'input' };
}

export function spliceTarget(model: ModuleResolver, hook: string): string {
  if (!model.moduleOf) return hook;
  let m: { module: string; source: 'output' | 'input' };
  try {
    m = model.moduleOf(hook);
  } catch {
    return hook; // unknown names are reported by the caller's own checks
  }
  if (m.source === 'input') throw new ValueError(`evaluate: '${hook}' is the input of '${m.module}', which cannot be spliced; evaluate a coder on a module output`);
  return m.module;
}
