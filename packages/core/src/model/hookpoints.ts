/**
 * Hookpoint selection as sparsify's Trainer does it (reference 4.1): fnmatch patterns over the
 * model's module names (case-sensitive, `*` matches dots too), natural-sorted; otherwise the
 * decoder blocks of `layers` (default: all); then every `layerStride`-th entry of the list.
 */
import { ValueError } from '../errors.js';
import { fnmatch } from '../hub.js';
import { naturalSort } from '../natsort.js';
import { looksLikeTlName } from './tl-names.js';

export interface HookpointSelection {
  /** fnmatch patterns, e.g. ["h.*.mlp", "layers.1[02]"]. */
  hookpoints?: readonly string[];
  /** Decoder block indices (used when no patterns are given). */
  layers?: readonly number[];
  /** Keep every n-th hookpoint of the final list (default 1). */
  layerStride?: number;
}

export interface HookpointSource {
  hookpoints(): { name: string }[];
  /** TransformerLens aliases (model/tl-names.ts); patterns shaped like TL names match these. */
  tlHookpoints?(): { name: string }[];
  /** Throws the reason when a TransformerLens name has no HF tensor on this model. */
  moduleOf?(name: string): unknown;
  layerNames(): string[];
  readonly numLayers: number;
}

export function resolveHookpoints(model: HookpointSource, sel: HookpointSelection = {}): string[] {
  const stride = sel.layerStride ?? 1;
  if (!Number.isInteger(stride) || stride < 1) throw new ValueError(`layerStride must be a positive integer, got ${stride}`);
  let names: string[];
  if (sel.hookpoints && sel.hookpoints.length) {
    if (!Array.isArray(sel.hookpoints) || !sel.hookpoints.every((p) => typeof p === 'string'))
      throw new ValueError(`hookpoints must be a list of pattern strings, got ${JSON.stringify(sel.hookpoints)}`);
    const all = model.hookpoints().map((h) => h.name);
    const tl = model.tlHookpoints?.().map((h) => h.name) ?? [];
    // TransformerLens-shaped patterns also match the model's TL aliases (model/tl-names.ts).
    const candidates = (p: string) => (looksLikeTlName(p) ? [...all, ...tl] : all);
    // Every pattern must match something: a typo, or a misplaced positional, is an error rather than ignored.
    for (const p of sel.hookpoints)
      if (!candidates(p).some((n) => fnmatch(n, p))) {
        if (looksLikeTlName(p) && !/[*?[]/.test(p)) model.moduleOf?.(p); // names the reason, when there is one
        const near = closestNames(p, candidates(p));
        throw new ValueError(`hookpoint pattern ${JSON.stringify(p)} matches no module of the model${near.length ? ` (closest: ${near.join(', ')})` : ''}; see model.hookpoints()`);
      }
    names = naturalSort([...new Set(sel.hookpoints.flatMap((p) => candidates(p).filter((n) => fnmatch(n, p))))]);
  } else {
    const blocks = model.layerNames();
    const layers = sel.layers && sel.layers.length ? [...sel.layers] : blocks.map((_, i) => i);
    for (const i of layers)
      if (!Number.isInteger(i) || i < 0 || i >= blocks.length)
        throw new ValueError(`layer ${i} is out of range: the model has ${blocks.length} layers`);
    names = layers.map((i) => blocks[i]);
  }
  return names.filter((_, i) => i % stride === 0);
}

/** Up to three module names nearest to `pattern` by edit distance. */
function closestNames(pattern: string, names: readonly string[]): string[] {
  const d = (a: string, b: string) => {
    let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const cur = [i];
      for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
    return prev[b.length];
  };
  return names
    .map((n) => ({ n, dist: d(pattern, n) }))
    .sort((x, y) => x.dist - y.dist)
    .slice(0, 3)
    .map((x) => x.n);
}
