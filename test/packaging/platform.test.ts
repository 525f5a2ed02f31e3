// The loader's view of platforms: the table of prebuilt packages agrees with their package.json
// files, the misfit reasons (platform, musl, old glibc), and the NativeLoadError message when no
// binary loads (platform, libc, what each package needs, how to build from source).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { PLATFORM_PACKAGES, detectLibc, misfit, noBinaryMessage } from '../../packages/core/src/platform.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

test('PLATFORM_PACKAGES matches packages/native-*/package.json and core optionalDependencies', () => {
  const dirs = readdirSync(join(root, 'packages')).filter((d) => d.startsWith('native-'));
  assert.equal(dirs.length, PLATFORM_PACKAGES.length);
  for (const d of dirs) {
    const pkg = readJson(join(root, 'packages', d, 'package.json'));
    const entry = PLATFORM_PACKAGES.find((p) => p.name === pkg.name);
    assert.ok(entry, `${pkg.name} missing from PLATFORM_PACKAGES`);
    assert.deepEqual(pkg.os, [entry.os]);
    assert.deepEqual(pkg.cpu, [entry.cpu]);
    assert.deepEqual(pkg.libc, ['glibc']);
    assert.equal(pkg.config.glibc, `>=${entry.glibc}`);
    assert.equal(pkg.config.variant, entry.variant);
    assert.equal(pkg.scripts, undefined, `${pkg.name} must have no install scripts`);
  }
  const core = readJson(join(root, 'packages', 'core', 'package.json'));
  assert.deepEqual(Object.keys(core.optionalDependencies).sort(), PLATFORM_PACKAGES.map((p) => p.name).sort());
});

test('misfit names the platform, musl and a glibc below the floor', () => {
  const x64 = PLATFORM_PACKAGES.find((p) => p.name === '@sparsify/native-linux-x64')!;
  assert.equal(misfit(x64, 'linux', 'x64', { family: 'glibc', version: '2.31' }), undefined);
  assert.equal(misfit(x64, 'linux', 'x64', { family: 'glibc', version: '2.39' }), undefined);
  assert.equal(misfit(x64, 'linux', 'x64', { family: 'glibc', version: '2.28' }), 'needs glibc >= 2.31, found 2.28');
  assert.equal(misfit(x64, 'linux', 'x64', { family: 'musl' }), 'needs glibc, this system uses musl');
  assert.equal(misfit(x64, 'darwin', 'arm64', { family: 'none' }), 'built for linux-x64, this is darwin-arm64');
});

test('noBinaryMessage lists platform, libc, each package and the build command', () => {
  const msg = noBinaryMessage(['/x/sparsify.node: not found'], '/nonexistent-checkout', { platform: 'linux', arch: 'x64', libc: { family: 'glibc', version: '2.28' } });
  assert.match(msg, /on linux-x64 \(glibc 2\.28\)/);
  assert.match(msg, /\/x\/sparsify\.node: not found/);
  for (const p of PLATFORM_PACKAGES) assert.ok(msg.includes(`${p.name}: needs ${p.os}-${p.cpu}, glibc >= ${p.glibc}`), p.name);
  assert.match(msg, /native-linux-x64: needs linux-x64, glibc >= 2\.31 -> does not fit: needs glibc >= 2\.31, found 2\.28/);
  assert.match(msg, /native-linux-arm64: .* does not fit: built for linux-arm64, this is linux-x64/);
  assert.match(msg, /npm install` \(it builds native\/build-cpu\/Release\/sparsify\.node\)/);
  const musl = noBinaryMessage([], root, { platform: 'linux', arch: 'arm64', libc: { family: 'musl' } });
  assert.match(musl, /on linux-arm64 \(musl libc\)/);
  assert.match(musl, /native-linux-arm64: needs linux-arm64, glibc >= 2\.31 -> does not fit: needs glibc, this system uses musl/);
  assert.ok(musl.includes(`cd ${root} && npm run build:native`));
});

test('detectLibc reports this host', () => {
  const libc = detectLibc();
  if (process.platform !== 'linux') return assert.equal(libc.family, 'none');
  const runtime = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime;
  if (runtime) assert.deepEqual(libc, { family: 'glibc', version: runtime });
  else assert.notEqual(libc.family, 'glibc');
});

test('the loader throws NativeLoadError with the platform diagnostics when no binary loads', () => {
  const script = `
    import { native } from '@sparsify/core';
    try { native(); console.log('loaded'); } catch (e) { console.log(JSON.stringify({ name: e.constructor.name, code: e.code, message: e.message })); }`;
  const r = spawnSync(process.execPath, ['--conditions=sparsify-source', '--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: root, encoding: 'utf8', env: { ...process.env, SPARSIFY_NATIVE: join(root, 'no-such-dir', 'sparsify.node') },
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.equal(out.name, 'NativeLoadError');
  assert.equal(out.code, 'ERR_SPARSIFY_NATIVE_LOAD');
  assert.ok(out.message.includes(`on ${process.platform}-${process.arch} (`), out.message);
  assert.ok(out.message.includes('no-such-dir/sparsify.node: not found'), out.message);
  assert.match(out.message, /@sparsify\/native-linux-x64: needs linux-x64, glibc >= 2\.31/);
  assert.match(out.message, /npm run build:native/);
});
