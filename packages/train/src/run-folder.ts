/**
 * Crash-safe checkpoint saves into a run folder that readers may be loading from at any moment.
 *
 * A save builds the complete new checkpoint in the sibling `<dir>.saving/` (its
 * `trainer_state.json` written last: from then on the save is committed), then rolls it forward
 * into `<dir>` entry by entry with atomic renames: a coder folder that does not exist yet moves
 * in whole; an existing one gets its `sae.safetensors` replaced before its `cfg.json`; the state
 * file moves last. `<dir>` itself is never renamed or removed, so a reader (our loadFromDisk,
 * Python's `load_from_disk` / `load_many`) always finds complete coder files in it: each file is
 * either the old or the new one, never a partial one. A kill during the roll-forward leaves a
 * committed `<dir>.saving/`; `recoverRunFolder` (run by `--resume` and by every save) finishes
 * it. A kill before the commit leaves an uncommitted one, which recovery deletes.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export const STATE_FILE = 'trainer_state.json';
/** Files and folders of a run folder that are not part of a checkpoint (a save leaves them alone). */
export const CARRIED_ENTRIES = ['metrics.jsonl', 'best'];

const SAVING = '.saving';
/** Left by saves of earlier versions, which swapped whole folders. */
const PREVIOUS = '.previous';

/** Called after every rename of a roll-forward (tests inject kills here). */
export type RenameHook = (from: string, to: string) => void;

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* not supported on every file system */
  }
}

function isComplete(dir: string): boolean {
  return existsSync(join(dir, STATE_FILE));
}

const isDir = (p: string) => {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
};

/** Move order inside one folder: weights before the cfg.json that announces them, the state file last. */
function moveOrder(names: string[]): string[] {
  const rank = (n: string) => (n === STATE_FILE ? 2 : n === 'cfg.json' ? 1 : 0);
  return [...names].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/** Moves every entry of `src` into `dst` with atomic renames (see the file comment); idempotent. */
function rollForward(src: string, dst: string, hook?: RenameHook): void {
  mkdirSync(dst, { recursive: true });
  for (const name of moveOrder(readdirSync(src))) {
    const from = join(src, name);
    const to = join(dst, name);
    if (isDir(from) && isDir(to)) {
      rollForward(from, to, hook);
      continue;
    }
    if (isDir(to)) rmSync(to, { recursive: true, force: true }); // a file replaces a stray folder
    renameSync(from, to);
    hook?.(from, to);
  }
  fsyncDir(dst);
  rmdirSync(src);
}

/**
 * Puts a run folder back into a consistent state after an interrupted save: finishes a committed
 * save, drops an uncommitted one. Returns true if `dir` then holds a complete checkpoint.
 */
export function recoverRunFolder(dir: string, hook?: RenameHook): boolean {
  const saving = dir + SAVING;
  const previous = dir + PREVIOUS;
  if (!existsSync(dir) && existsSync(previous)) renameSync(previous, dir);
  if (existsSync(saving)) {
    if (isComplete(saving)) rollForward(saving, dir, hook);
    else rmSync(saving, { recursive: true, force: true });
  }
  if (existsSync(previous)) {
    for (const name of CARRIED_ENTRIES)
      if (existsSync(join(previous, name)) && !existsSync(join(dir, name))) renameSync(join(previous, name), join(dir, name));
    rmSync(previous, { recursive: true, force: true });
  }
  if (existsSync(dirname(dir))) fsyncDir(dirname(dir));
  return existsSync(dir) && isComplete(dir);
}

/**
 * Writes a checkpoint: `write(tmpDir)` must fill tmpDir and write STATE_FILE last.
 * Returns after the new checkpoint is in `dir` and durable.
 */
export async function replaceRunFolder(dir: string, write: (tmpDir: string) => Promise<void> | void, hook?: RenameHook): Promise<void> {
  mkdirSync(dirname(dir), { recursive: true });
  recoverRunFolder(dir);
  const saving = dir + SAVING;
  rmSync(saving, { recursive: true, force: true });
  mkdirSync(saving, { recursive: true });
  await write(saving);
  if (!isComplete(saving)) throw new Error(`internal: checkpoint writer left no ${STATE_FILE} in ${saving}`);
  fsyncDir(saving);
  fsyncDir(dirname(saving));
  rollForward(saving, dir, hook);
  fsyncDir(dirname(dir));
}

/** Names of the in-progress/previous siblings (for tests and docs). */
export function siblingNames(dir: string): { saving: string; previous: string } {
  return { saving: basename(dir) + SAVING, previous: basename(dir) + PREVIOUS };
}

/** Lists leftover sibling folders of a save (empty when consistent). */
export function leftovers(dir: string): string[] {
  const parent = dirname(dir);
  if (!existsSync(parent)) return [];
  const { saving, previous } = siblingNames(dir);
  return readdirSync(parent).filter((n) => n === saving || n === previous);
}
