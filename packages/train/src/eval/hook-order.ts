/**
 * Coder names to hookpoints, and hookpoints in the order the forward runs them (a module after
 * the modules inside it), so that splicing several coders one after another matches forward hooks.
 */

/** `h.0/seed3` -> `h.0` (multi-seed runs name coders `{hook}/seed{N}`). */
export function hookOfCoder(name: string): string {
  return name.replace(/\/seed\d+$/, '');
}

/**
 * `hooks` sorted by execution: module order (transformers' named_modules order, which is the
 * order submodules run in for the supported architectures), except that a module runs after
 * everything nested in it (`layers.1.mlp` before `layers.1`).
 */
export function executionOrder(moduleOrder: readonly string[], hooks: readonly string[]): string[] {
  const pos = new Map(moduleOrder.map((n, i) => [n, i]));
  const inside = (a: string, b: string) => a.startsWith(b + '.');
  return [...hooks].sort((a, b) => {
    if (inside(a, b)) return -1;
    if (inside(b, a)) return 1;
    return (pos.get(a) ?? 0) - (pos.get(b) ?? 0);
  });
}
