/**
 * Writes a coder folder's files as a pair: every file is first written into a temporary sibling
 * folder. A new folder is then that sibling renamed (absent or complete); an existing one gets the
 * finished files renamed over its own, so a failed write never leaves new weights beside an old
 * cfg.json, and files the folder holds besides these are kept.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import { FileFormatError } from './errors.js';
import { folderTargetProblem } from './folder-target.js';

/** One file of the folder: its name and the function that writes it at a given path. */
export interface FolderFile {
  name: string;
  write(path: string): void;
}

export function writeFolderFiles(dir: string, files: FolderFile[]): void {
  const problem = folderTargetProblem(dir);
  if (problem) throw new FileFormatError(problem);
  const target = resolve(dir);
  const existed = existsSync(target);
  if (existed)
    for (const f of files)
      if (existsSync(join(target, f.name)) && !statSync(join(target, f.name)).isFile())
        throw new FileFormatError(`${join(target, f.name)}: exists and is not a file, so it cannot be replaced`);
  mkdirSync(dirname(target), { recursive: true });
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp);
  try {
    for (const f of files) f.write(join(tmp, f.name));
    if (existed) for (const f of files) renameSync(join(tmp, f.name), join(target, f.name));
    else renameSync(tmp, target);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
