// Packaging check (runs in CI): `npm pack` @sparsify/core and the platform packages (CPU, and
// CUDA when the CUDA variant is built), install the tarballs (--prefer-offline) into an empty folder with a
// PATH that holds only node and npm (no compiler, no cmake, no nvcc), and run a sparse-coder
// encode through the installed @sparsify/core. Without a GPU the loader must pass over the CUDA
// package (it sees no device) and load @sparsify/native-linux-x64; the encode must equal the
// one of this checkout's own build. @sparsify/core's registry dependencies come from the npm
// cache when it has them (after `npm install`), else from the registry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { SparseCoder, Tensor } from '@sparsify/core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64';

function sh(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }) {
  const r = spawnSync(cmd, args, { ...opts, encoding: 'utf8', timeout: 600_000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function whichNpm(): string {
  const r = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' });
  return realpathSync(r.stdout.trim());
}

// The encode the installed package must reproduce (same seed, same CPU kernels).
const encodeScript = `
  const coder = await SparseCoder.create(16, { expansionFactor: 4, k: 3 }, { seed: 7 });
  const x = Tensor.from(Float32Array.from({ length: 5 * 16 }, (_, i) => Math.sin(i * 0.37) * 2), [5, 16]);
  const r = await coder.encode(x);
  const enc = { acts: [...r.topActs.toFloat32Array()], indices: [...r.topIndices.toInt32Array()] };`;

// The same encode with this checkout's build.
async function encodeHere() {
  const coder = await SparseCoder.create(16, { expansionFactor: 4, k: 3 }, { seed: 7 });
  const x = Tensor.from(Float32Array.from({ length: 5 * 16 }, (_, i) => Math.sin(i * 0.37) * 2), [5, 16]);
  const r = await coder.encode(x);
  return { acts: [...r.topActs.toFloat32Array()], indices: [...r.topIndices.toInt32Array()] };
}

test('core + platform packages install without a compiler and run an encode', { skip: onLinuxX64 ? false : 'linux-x64 only' }, async () => {
  const work = mkdtempSync(join(tmpdir(), 'spx-pack-'));
  try {
    // 1. The prebuilt binary and core's dist/.
    const prebuilt = join(root, 'packages', 'native-linux-x64', 'prebuilds', 'linux-x64', 'sparsify.napi.glibc.node');
    const haveCpuBuild = existsSync(join(root, 'native', 'build-cpu', 'Release', 'sparsify.node'));
    const haveCudaBuild = existsSync(join(root, 'native', 'build-cuda', 'Release', 'sparsify.node'));
    // Reuses the builds of this checkout (npm test compiles the CUDA variant first when nvcc is found).
    sh(process.execPath, [join(root, 'scripts', 'prebuild.mjs'), ...(haveCudaBuild ? [] : ['--cpu-only']), ...(haveCpuBuild ? ['--no-build'] : [])], { cwd: root });
    assert.ok(existsSync(prebuilt), `missing ${prebuilt}`);
    const pkgs = ['core', 'native-linux-x64', ...(haveCudaBuild ? ['native-linux-x64-cuda'] : [])];
    sh(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'packages/core'], { cwd: root });

    // 2. Tarballs.
    const tarballs = join(work, 'tarballs');
    mkdirSync(tarballs);
    const npmCli = whichNpm();
    for (const pkg of pkgs)
      sh(process.execPath, [npmCli, 'pack', '--pack-destination', tarballs, '--silent'], { cwd: join(root, 'packages', pkg) });
    const tgz = readdirSync(tarballs).filter((f) => f.endsWith('.tgz')).map((f) => join(tarballs, f));
    assert.equal(tgz.length, pkgs.length, `tarballs: ${tgz.join(', ')}`);

    // 3. A PATH with node and npm only.
    const bin = join(work, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    symlinkSync(npmCli, join(bin, 'npm'));
    const env: NodeJS.ProcessEnv = { HOME: process.env.HOME, PATH: bin, npm_config_cache: process.env.npm_config_cache };
    for (const tool of ['cc', 'gcc', 'g++', 'c++', 'cmake', 'nvcc', 'make'])
      assert.notEqual(spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: bin } }).status, 0, `${tool} is on the test PATH`);

    // 4. Offline install into an empty project.
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'spx-app', private: true, type: 'module' }));
    sh(process.execPath, [npmCli, 'install', ...tgz, '--prefer-offline', '--no-audit', '--no-fund'], { cwd: app, env });
    assert.ok(!existsSync(join(app, 'node_modules', '@sparsify', 'core', 'native')), 'core must not ship native sources');

    // 5. Use it.
    const out = sh(process.execPath, ['--input-type=module', '-e', `
      import { SparseCoder, Tensor, nativePath, native } from '@sparsify/core';
      ${encodeScript}
      console.log(JSON.stringify({ enc, path: nativePath(), info: native().buildInfo() }));`],
    { cwd: app, env });
    const res = JSON.parse(out.trim().split('\n').pop()!);
    const expected = await encodeHere();
    assert.deepEqual(res.enc, expected);
    assert.equal(res.enc.indices.length, 15);
    if (haveCudaBuild) assert.ok(existsSync(join(app, 'node_modules', '@sparsify', 'native-linux-x64-cuda', 'prebuilds', 'linux-x64', 'sparsify.napi.glibc.node')));
    if (res.info.cuda) {
      // a GPU machine: the CUDA package was chosen because it sees a device
      assert.match(res.path, /node_modules\/@sparsify\/native-linux-x64-cuda\/prebuilds\/linux-x64\/sparsify\.napi\.glibc\.node$/);
    } else {
      assert.match(res.path, /node_modules\/@sparsify\/native-linux-x64\/prebuilds\/linux-x64\/sparsify\.napi\.glibc\.node$/);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
