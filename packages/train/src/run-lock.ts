/**
 * One training process per run folder. The lock is the file `{run}.lock` beside the run folder,
 * created atomically (a complete temp file hard-linked into place) and holding the owner's pid,
 * process start time and host. A lock whose process is gone (no such pid, or a pid reused by a
 * process that started at another time) is stale: it is taken over. A lock held by a live
 * process, or by another host (which cannot be checked from here), is refused with a message
 * naming the folder and the holder.
 */
import { ConfigError } from '@sparsify/core';
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname } from 'node:path';

export interface LockOwner {
  pid: number;
  /** Start time of the process (Linux: /proc/<pid>/stat field 22, clock ticks since boot); null elsewhere. */
  start: string | null;
  host: string;
}

/** The process start time as the kernel reports it, or null where there is no /proc. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf-8');
    // Field 2 (comm) is in parentheses and may contain spaces: count fields after its closing paren.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? null; // field 22 = index 19 after fields 1-2
  } catch {
    return null;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when the owner is certainly gone (same host, and its pid is dead or belongs to a newer process). */
export function isStale(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return false;
  if (!processAlive(owner.pid)) return true;
  const now = processStartTime(owner.pid);
  return owner.start !== null && now !== null && now !== owner.start;
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const o = JSON.parse(text) as LockOwner;
    if (Number.isSafeInteger(o.pid) && o.pid > 0 && typeof o.host === 'string') return o;
  } catch {
    /* unreadable: treated below */
  }
  return undefined;
}

export interface RunLock {
  readonly path: string;
  release(): void;
}

/** Takes the lock of run folder `dir`; a ConfigError if another live process holds it. */
export function lockRunFolder(dir: string): RunLock {
  const path = `${dir}.lock`;
  mkdirSync(dirname(path), { recursive: true });
  const me: LockOwner = { pid: process.pid, start: processStartTime(process.pid), host: hostname() };
  const text = JSON.stringify(me) + '\n';
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, text);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(tmp, path);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 5) throw e;
      }
      let held: string;
      try {
        held = readFileSync(path, 'utf-8');
      } catch {
        continue; // released meanwhile
      }
      const owner = parseOwner(held);
      if (owner && !isStale(owner))
        throw new ConfigError(
          `run folder ${dir} is in use by another training process (pid ${owner.pid} on ${owner.host}, lock ${path}); ` +
            `wait for it to finish or use another --run_name` +
            (owner.host !== hostname() ? '; if that process is gone, delete the lock file' : ''),
        );
      // Stale (or unreadable: never written by us, since ours appear complete): take it over, but only
      // the very file judged stale (another process may have replaced it meanwhile).
      const grave = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.stale`;
      try {
        renameSync(path, grave);
      } catch {
        continue;
      }
      if (readFileSync(grave, 'utf-8') !== held) {
        try {
          linkSync(grave, path); // not the one we judged: put it back
        } catch {
          /* a newer lock is in place already */
        }
      }
      unlinkSync(grave);
    }
  } finally {
    unlinkSync(tmp);
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off('exit', release);
    try {
      if (readFileSync(path, 'utf-8') === text) unlinkSync(path);
    } catch {
      /* already gone */
    }
  };
  process.on('exit', release);
  return { path, release };
}

/** The lock file name of a run folder (for listings that must skip it). */
export function lockFileName(dir: string): string {
  return `${basename(dir)}.lock`;
}
