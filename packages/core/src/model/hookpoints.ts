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
  layerNames(): string[];
  readonly numLayers: number;
}

export function resolveHookpoints(model: HookpointSource, sel: HookpointSelection = {}): string[] {
  const stride = sel.layerStride ?? 1;
  if (!Number.isInteger(stride) || stride < 1) throw new ValueError(`layerStride must be a positive integer, got ${stride}`);
  let names: string[];
  if (sel.hookpoints && sel.hookpoints.length) {
    const all = model.hookpoints().map((h) => h.name);
    const tl = model.tlHookpoints?.().map((h) => h.name) ?? [];
    const matches = (n: string, p: string) => fnmatch(n, p);
    names = naturalSort([
      ...all.filter((n) => sel.hookpoints!.some((p) => matches(n, p))),
      ...tl.filter((n) => sel.hookpoints!.some((p) => looksLikeTlName(p) && matches(n, p))),
    ]);
    if (!names.length)
      throw new ValueError(`no module matches the hookpoint patterns ${JSON.stringify(sel.hookpoints)} (see model.hookpoints())`);
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
