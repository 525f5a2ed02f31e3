// `npm ci` must accept the checked-in package-lock.json (users and CI systems install with it): the
// manifests of the root and of every workspace are copied into an empty folder with the lock file
// and `npm ci --dry-run --ignore-scripts` resolves them without touching the network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

test('npm ci accepts package-lock.json (dry run, every workspace manifest)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sparsify-npm-ci-'));
  try {
    const workspaces = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { workspaces: string[] }).workspaces;
    for (const rel of ['package.json', 'package-lock.json', ...workspaces.map((w) => join(w, 'package.json'))]) {
      mkdirSync(dirname(join(dir, rel)), { recursive: true });
      copyFileSync(join(root, rel), join(dir, rel));
    }
    const r = spawnSync('npm', ['ci', '--dry-run', '--ignore-scripts', '--no-audit', '--no-fund', '--offline'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, `npm ci --dry-run failed:\n${r.stdout}\n${r.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
