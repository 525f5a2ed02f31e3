/**
 * The weight files a loaded model has memory-mapped. Another process truncating one of them
 * would make the next read of the mapping a SIGBUS that kills the process; an fstat of each
 * file (through a descriptor of the mapped inode, not the path) before every forward turns a
 * size change into a FileFormatError instead. What remains: a truncation during a forward
 * still faults; a file replaced by rename is harmless (the mapping keeps the old inode).
 */
import { closeSync, fstatSync, openSync } from 'node:fs';

import { FileFormatError } from '../errors.js';

export class MappedFiles {
  #files: { path: string; fd: number; size: number }[] = [];

  constructor(paths: Iterable<string>) {
    for (const path of new Set(paths)) {
      const fd = openSync(path, 'r');
      this.#files.push({ path, fd, size: fstatSync(fd).size });
    }
  }

  /** Throws when a mapped file no longer has the size it had at load time. */
  check(): void {
    for (const f of this.#files) {
      if (f.fd < 0) continue;
      const now = fstatSync(f.fd).size;
      if (now !== f.size)
        throw new FileFormatError(`${f.path}: the weights file changed size while the model was loaded (${f.size} -> ${now} bytes); load the model again`);
    }
  }

  close(): void {
    for (const f of this.#files) if (f.fd >= 0) closeSync(f.fd);
    this.#files = [];
  }
}
