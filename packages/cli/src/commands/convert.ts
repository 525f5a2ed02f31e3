/**
 * `sparsify convert --to saelens|sparsify SRC DST [--hook_name NAME]`: one coder folder, or every
 * coder folder of a run folder (DST/<name>/ each), between sparsify's format and SAELens's.
 * DST must not exist: everything is written into a temporary sibling that is renamed to DST at
 * the end, so DST is either absent or complete.
 */
import { ConfigError, FileFormatError, folderTargetProblem, isSaeLensDir, listCoderDirs, SparseCoder } from '@sparsify/core';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import { UsageError } from '../flags.js';
import type { Output } from '../progress.js';

export const CONVERT_USAGE = 'usage: sparsify convert --to saelens|sparsify SRC DST [--hook_name NAME]\n';

function isCoderDir(dir: string): boolean {
  return existsSync(join(dir, 'cfg.json'));
}

export async function convertCommand(argv: readonly string[], io: { stdout: Output }): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(CONVERT_USAGE);
    return 0;
  }
  let to: string | undefined;
  let hookName: string | undefined;
  const pos: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (flag: string) => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined || v === '') throw new UsageError(`convert: ${flag} needs a value`);
      return v;
    };
    if (a === '--to' || a.startsWith('--to=')) to = value('--to');
    else if (a === '--hook_name' || a === '--hook-name' || a.startsWith('--hook_name=') || a.startsWith('--hook-name=')) hookName = value('--hook_name');
    else if (a.startsWith('-')) throw new UsageError(`convert: unknown flag ${a}`);
    else pos.push(a);
  }
  if (to !== 'saelens' && to !== 'sparsify') throw new UsageError(`convert: --to must be saelens or sparsify, got ${JSON.stringify(to)}`);
  if (pos.length !== 2) throw new UsageError('convert: expected SRC and DST');
  const [src, dst] = pos.map((p) => resolve(p));
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new UsageError(`convert: ${src} is not a folder`);
  if (existsSync(dst)) throw new UsageError(`convert: ${dst} already exists (convert never replaces a folder)`);
  const blocked = folderTargetProblem(dst);
  if (blocked) throw new UsageError(`convert: ${blocked}`);
  const single = isCoderDir(src);
  const names = single ? [''] : listCoderDirs(src);
  if (!names.length) throw new FileFormatError(`convert: ${src} holds no coder folder (cfg.json)`);
  if (hookName !== undefined && names.length > 1) throw new UsageError('convert: --hook_name applies to a single coder folder, not a run folder');
  const tmp = join(dirname(dst), `.${basename(dst)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    for (const name of names) {
      const from = join(src, name);
      const into = name ? join(tmp, name) : tmp;
      const fromSaeLens = isSaeLensDir(from);
      if (fromSaeLens === (to === 'saelens')) throw new ConfigError(`convert: ${from} is already in the ${to} format`);
      const coder = await SparseCoder.loadFromDisk(from);
      try {
        if (to === 'saelens') await coder.saveToDisk(into, { format: 'saelens', hookName: hookName ?? basename(from) });
        else await coder.saveToDisk(into);
      } finally {
        coder.dispose();
      }
      io.stdout.write(`${from} -> ${name ? join(dst, name) : dst} (${to})\n`);
    }
    renameSync(tmp, dst);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return 0;
}
