/**
 * Temp files of writers that were killed: `.{name}.{pid}-{start}.{random}.tmp` (the token cache;
 * start = the writer's process start time) and `.{name}.{pid}.{random}.tmp` (writeFileAtomic).
 * A temp file whose writer is gone is deleted; one of a live writer is left alone.
 */
import { readdirSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

import { isStale, processStartTime } from './run-lock.js';

const TEMP = /^\..+\.(\d+)(?:-(\d+))?\.[0-9a-f]+\.tmp$/;

/** The pid-and-start tag a temp file name carries. */
export function tempTag(): string {
  const start = processStartTime(process.pid);
  return start === null ? String(process.pid) : `${process.pid}-${start}`;
}

/** Deletes the temp files in `dir` whose writing process is gone; returns their names. */
export function removeStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMP.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid) continue;
    if (!isStale({ pid, start: m[2] ?? null, host: hostname() })) continue;
    try {
      unlinkSync(join(dir, name));
      removed.push(name);
    } catch {
      /* removed by someone else */
    }
  }
  return removed;
}
