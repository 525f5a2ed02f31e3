/** A folder about to be written: the first of its ancestors that exists must be a folder too. */
import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Why `dir` cannot be created or written as a folder (a file sits on its path), or undefined. */
export function folderTargetProblem(dir: string): string | undefined {
  for (let p = resolve(dir); ; p = dirname(p)) {
    if (existsSync(p)) return statSync(p).isDirectory() ? undefined : `${p} exists and is not a folder, so ${dir} cannot be written`;
    if (dirname(p) === p) return undefined;
  }
}
