/**
 * Claiming a run folder before training: the lock (run-lock.ts), then the rule that a fresh run
 * never replaces or mixes with another: a folder that already holds a run is refused unless the
 * run resumes it or overwrite was asked for.
 */
import { ConfigError } from '@sparsify/core';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { lockRunFolder, type RunLock } from './run-lock.js';
import { removeStaleTemps } from './stale-temps.js';

/** True when `dir` (or a save in progress beside it) holds anything. */
export function holdsRun(dir: string): boolean {
  if (existsSync(`${dir}.saving`) || existsSync(`${dir}.previous`)) return true;
  try {
    return readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}

/** Run names are one folder under save_dir: no separators, no `.`/`..`, nothing hidden. */
export function checkRunName(name: string): void {
  if (name === '' || name === '.' || name === '..' || /[/\\]/.test(name) || name.startsWith('.') || name.includes('\0'))
    throw new ConfigError(`--run_name ${JSON.stringify(name)}: a run name is one folder name under --save_dir (no '/', '\\', leading '.' or '..')`);
}

export function claimRunFolder(dir: string, opts: { resume: boolean; overwrite?: boolean }): RunLock {
  const lock = lockRunFolder(dir);
  removeStaleTemps(dir);
  try {
    if (!opts.resume && holdsRun(dir)) {
      if (!opts.overwrite)
        throw new ConfigError(
          `run folder ${dir} already holds a run; continue it with --resume, choose another --run_name, or replace it with --overwrite`,
        );
      for (const d of [dir, `${dir}.saving`, `${dir}.previous`]) rmSync(d, { recursive: true, force: true });
    }
  } catch (e) {
    lock.release();
    throw e;
  }
  return lock;
}

/** `base`, or `base-2`, `base-3`, ... : the first name under saveDir that holds no run and no lock. */
export function freshRunName(saveDir: string, base: string): string {
  for (let i = 1; ; i++) {
    const name = i === 1 ? base : `${base}-${i}`;
    const dir = join(saveDir, name);
    if (!holdsRun(dir) && !existsSync(`${dir}.lock`)) return name;
  }
}
