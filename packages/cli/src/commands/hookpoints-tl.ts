/**
 * `sparsify hookpoints MODEL --names tl`: the TransformerLens hook names the model answers to, the
 * HF module output or input each one aliases, and what TransformerLens's default weight
 * processing (`from_pretrained` without `_no_processing`) would change.
 */
import type { Output } from '../progress.js';

export interface TlListing {
  tlHookpoints(): { name: string; module: string; source: 'output' | 'input'; width: number; processed?: string }[];
}

export function writeTlHookpoints(model: TlListing, out: Output): void {
  const rows = model.tlHookpoints();
  const w = Math.max(4, ...rows.map((r) => r.name.length));
  const m = Math.max(6, ...rows.map((r) => r.module.length + (r.source === 'input' ? 9 : 0)));
  out.write(`${'name'.padEnd(w)}  ${'module'.padEnd(m)}  width  under TL default processing\n`);
  for (const r of rows) {
    const mod = r.source === 'input' ? `${r.module} (input)` : r.module;
    out.write(`${r.name.padEnd(w)}  ${mod.padEnd(m)}  ${String(r.width).padStart(5)}  ${r.processed ?? 'equal'}\n`);
  }
}
