/**
 * Where a schedule-free (signum) run keeps its training iterate y, apart from the averaged x
 * that the coder folder holds: `{name}/train_iterate/` inside the coder's own folder, so that the
 * run folder's top level holds only coder folders (Python's `load_many` loads every top-level
 * folder). Runs saved by earlier versions kept it in `{run}/train_iterate/{name}/`; resume still
 * reads that, and the next save removes it.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const TRAIN_ITERATE = 'train_iterate';

/** The folder holding coder `name`'s training iterate in run folder `dir`, if there is one. */
export function trainIterateDir(dir: string, name: string): string | undefined {
  for (const d of [join(dir, name, TRAIN_ITERATE), join(dir, TRAIN_ITERATE, name)]) if (existsSync(join(d, 'sae.safetensors'))) return d;
  return undefined;
}

/** Removes the earlier versions' `{run}/train_iterate/` once a save has written the new layout. */
export function dropLegacyTrainIterate(dir: string): void {
  rmSync(join(dir, TRAIN_ITERATE), { recursive: true, force: true });
}
