/**
 * Where a file is expected, only a regular file will do: reading a FIFO blocks forever, and a
 * device such as /dev/zero never ends. Checked (following symlinks) before anything opens it.
 */
import { statSync } from 'node:fs';

import { FileFormatError, type SparsifyError } from './errors.js';

function kindOf(st: ReturnType<typeof statSync>): string {
  if (!st) return 'missing';
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** Throws (FileFormatError by default) unless `path` is a regular file; missing files pass (the caller reports them). */
export function assertRegularFile(path: string, what: string, Err: new (m: string) => SparsifyError = FileFormatError): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    return;
  }
  if (!st.isFile()) throw new Err(`${path}: ${what} must be a regular file, but this is ${kindOf(st)}`);
}
