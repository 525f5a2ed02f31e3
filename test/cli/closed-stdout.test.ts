// A reader that closes the pipe early (`sparsify hookpoints MODEL | head`) must not make the CLI
// print a stack trace: EPIPE on stdout ends the output quietly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

test('a closed stdout (| head) ends the CLI without a stack trace', async () => {
  const child = spawn(process.execPath, [join(root, 'packages', 'cli', 'bin', 'sparsify.js'), 'hookpoints', join(root, 'packages', 'train', 'assets', 'default')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.destroy(); // the reader is gone before the first write
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(stderr, '', `stderr should be empty, got:\n${stderr}`);
  assert.equal(code, 0);
});
