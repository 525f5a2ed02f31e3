// The release binary check (scripts/release/binary-check.mjs) on real ELF files of this machine:
// the development build links only glibc's libraries and no C++ runtime; a floor below what a
// binary needs is reported with the symbol versions; a dynamically linked libstdc++ is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// @ts-expect-error: a plain .mjs script without type declarations
import { SYSTEM_LIBRARIES, checkBinary, neededLibraries, versionCompare, versionNeeds } from '../../scripts/release/binary-check.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const devBuild = join(root, 'native', 'build-cpu', 'Release', 'sparsify.node');
const skip = process.platform !== 'linux' ? 'Linux only'
  : spawnSync('readelf', ['--version']).status !== 0 ? 'readelf not installed'
  : !existsSync(devBuild) ? 'no native/build-cpu build' : false;

test('versionCompare orders dotted versions numerically', () => {
  assert.ok(versionCompare('2.31', '2.4') > 0);
  assert.ok(versionCompare('2.29', '2.31') < 0);
  assert.equal(versionCompare('2.31', '2.31.0'), 0);
});

test('the CPU build links only glibc libraries and no C++ runtime', { skip }, () => {
  const needed: string[] = neededLibraries(devBuild);
  assert.ok(needed.includes('libc.so.6'), needed.join(','));
  for (const lib of needed) assert.ok(SYSTEM_LIBRARIES.has(lib), `${lib} is not a glibc library`);
  const needs: Record<string, string[]> = versionNeeds(devBuild);
  assert.ok(needs['libc.so.6']?.some((v) => v.startsWith('GLIBC_2.')), JSON.stringify(needs));
  const r = checkBinary(devBuild, '999');
  assert.deepEqual(r.problems, []);
  assert.match(r.glibcFloor, /^2\.\d+$/);
  if (process.arch === 'x64') assert.equal(r.machine, 'Advanced Micro Devices X86-64');
  if (process.arch === 'arm64') assert.equal(r.machine, 'AArch64');
});

test('a floor below the needed glibc is reported with the symbol versions', { skip }, () => {
  const r = checkBinary(devBuild, '2.0');
  assert.equal(r.problems.length, 1, r.problems.join('\n'));
  assert.match(r.problems[0], new RegExp(`needs glibc ${r.glibcFloor.replace('.', '\\.')} > floor 2\\.0: GLIBC_2\\.[\\d.]+ \\([^)]+\\.so`));
});

const nodeSkip = skip || (neededLibraries(process.execPath).includes('libstdc++.so.6') ? false : 'this node links libstdc++ statically');
test('a dynamically linked libstdc++ is refused (this node binary)', { skip: nodeSkip }, () => {
  const r = checkBinary(process.execPath, '999');
  assert.ok(r.problems.some((p: string) => /shared libraries a user may lack: .*libstdc\+\+\.so\.6/.test(p)), r.problems.join('\n'));
  assert.ok(r.problems.some((p: string) => /C\+\+ runtime symbol versions .*GLIBCXX_/.test(p)), r.problems.join('\n'));
});
