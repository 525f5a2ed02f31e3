#!/usr/bin/env node
// Builds the prebuilt platform packages (npm run prebuilds):
//   packages/native-linux-x64/prebuilds/linux-x64/sparsify.napi.glibc.node        CPU
//   packages/native-linux-x64-cuda/prebuilds/linux-x64/sparsify.napi.glibc.node   CUDA (when the host has a CUDA toolkit)
//   packages/native-linux-arm64/prebuilds/linux-arm64/sparsify.napi.glibc.node    CPU, cross-compiled
// Release builds (the default) run inside a cached Debian bullseye root (glibc 2.31, g++ 10,
// cmake 3.18; scripts/release/roots.mjs) with this repository, the host's node and the host's CUDA
// toolkit mounted into it; g++ 10 is nvcc's host compiler. Each binary is stripped and checked
// (scripts/release/binary-check.mjs): no glibc symbol version above 2.31, no shared library
// beyond glibc's own, no C++ runtime symbol versions (libstdc++/libgcc are linked statically);
// CUDA: the GPU code in .nv_fatbin covers config.gpuArchs; package versions equal @sparsify/core's.
// prebuilds/<platform>/build-info.json records the measured facts.
// Flags:
//   --cpu-only          no CUDA variant
//   --targets=a,b       only these packages (native-linux-x64, native-linux-x64-cuda, native-linux-arm64)
//   --host              build with this machine's toolchain instead (x64 only; development use:
//                       the glibc floor is then this host's, reported but not enforced)
//   --no-build          package the existing development builds native/build-{cpu,cuda} (implies --host)
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { checkBinary, versionCompare } from './release/binary-check.mjs';
import { GLIBC_FLOOR, SUITE, buildRoot, ensureHostTools, inRoot, run, withMounts } from './release/roots.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const args = new Set(argv);
const noBuild = args.has('--no-build');
const hostBuild = noBuild || args.has('--host');
const onlyTargets = argv.find((a) => a.startsWith('--targets='))?.slice(10).split(',');

const ALL = [
  { pkg: 'native-linux-x64', plat: 'linux-x64', cuda: false, devBuild: 'build-cpu' },
  { pkg: 'native-linux-x64-cuda', plat: 'linux-x64', cuda: true, devBuild: 'build-cuda' },
  { pkg: 'native-linux-arm64', plat: 'linux-arm64', cuda: false, cross: 'cmake/aarch64-linux-gnu.cmake' },
];
const ELF_MACHINE = { 'linux-x64': 'Advanced Micro Devices X86-64', 'linux-arm64': 'AArch64' };
const GPU_CODE = ['sass:80', 'sass:86', 'sass:89', 'sass:90', 'ptx:90'];

/** The host's CUDA toolkit folder (bin/nvcc inside), or undefined. */
function cudaToolkit() {
  for (const dir of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].filter(Boolean))
    if (existsSync(join(dir, 'bin', 'nvcc'))) return realpathSync(dir);
  return undefined;
}

function haveNvcc() {
  for (const c of [process.env.CUDACXX, 'nvcc', '/usr/local/cuda/bin/nvcc'].filter(Boolean))
    if (spawnSync(c, ['--version']).status === 0) return c;
  return undefined;
}

// GPU code objects in the .nv_fatbin section: [{kind: 'sass'|'ptx', arch}] (fatbin container
// format: 0xBA55ED50 header, then entries with kind at +0, header size at +4, payload size at +8,
// arch at +28).
function fatbinArchs(file) {
  const dir = mkdtempSync(join(tmpdir(), 'spx-fatbin-'));
  try {
    const bin = join(dir, 'fatbin');
    run('objcopy', ['-O', 'binary', '--only-section=.nv_fatbin', file, bin]);
    const d = readFileSync(bin);
    const out = new Set();
    let off = 0;
    while (off + 16 <= d.length) {
      if (d.readUInt32LE(off) !== 0xba55ed50) { off += 8; continue; }
      const hs = d.readUInt16LE(off + 6), fs = Number(d.readBigUInt64LE(off + 8));
      let p = off + hs;
      const end = p + fs;
      while (p < end) {
        const kind = d.readUInt16LE(p), ehs = d.readUInt32LE(p + 4), size = Number(d.readBigUInt64LE(p + 8));
        out.add(`${kind === 1 ? 'ptx' : 'sass'}:${d.readUInt32LE(p + 28)}`);
        p += ehs + size;
      }
      off = end;
    }
    return [...out].sort();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const cmakeJs = join('node_modules', 'cmake-js', 'bin', 'cmake-js');
const cmakeArgs = (t, toolkit) => t.cuda
  ? ['--CDSPARSIFY_CUDA=ON', `--CDCMAKE_CUDA_COMPILER=${toolkit}/bin/nvcc`, '--CDCMAKE_CUDA_HOST_COMPILER=/usr/bin/g++']
  : ['--CDSPARSIFY_CUDA=OFF', ...(t.cross ? [`--CDCMAKE_TOOLCHAIN_FILE=/src/${t.cross}`] : [])];

/** Release build of each target inside the bullseye root; returns {pkg: built .node path on the host}. */
function releaseBuild(targets, toolkit) {
  ensureHostTools();
  const buildDir = buildRoot();
  const env = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/root', LANG: 'C.UTF-8' };
  const binds = [[root, '/src'], [process.execPath, '/usr/local/bin/node', { readOnly: true }],
    ...(toolkit ? [[toolkit, toolkit, { readOnly: true }]] : [])];
  const out = {};
  withMounts(buildDir, binds, () => {
    for (const t of targets) {
      const rel = join('native', 'build-release', t.pkg);
      console.log(`[prebuild] ${t.pkg}: building in the ${SUITE} root (${buildDir})`);
      inRoot(buildDir, '/src', ['node', cmakeJs, 'compile', '--directory', '/src', '--out', rel, '--config', 'Release',
        '--parallel', String(availableParallelism()), ...cmakeArgs(t, toolkit)], env, { stdio: 'inherit' });
      // The root's binutils know the target (the host's may not know aarch64).
      const strip = t.cross ? 'aarch64-linux-gnu-strip' : 'strip';
      inRoot(buildDir, '/src', [strip, '--strip-unneeded', '-o', join(rel, 'Release', 'sparsify.stripped.node'), join(rel, 'Release', 'sparsify.node')], env);
      out[t.pkg] = join(root, rel, 'Release', 'sparsify.stripped.node');
    }
  });
  return out;
}

/** Development build(s) on this host (the old path); returns {pkg: path}. */
function hostBuilds(targets) {
  const nvcc = targets.some((t) => t.cuda) ? haveNvcc() : undefined;
  if (!noBuild) {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), ...(nvcc ? ['--cuda'] : [])], { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
  return Object.fromEntries(targets.map((t) => [t.pkg, join(root, 'native', t.devBuild, 'Release', 'sparsify.node')]));
}

const coreVersion = JSON.parse(readFileSync(join(root, 'packages', 'core', 'package.json'), 'utf8')).version;
const toolkit = args.has('--cpu-only') ? undefined : cudaToolkit();
let targets = ALL.filter((t) => !onlyTargets || onlyTargets.includes(t.pkg));
if (hostBuild) targets = targets.filter((t) => t.plat === `${process.platform}-${process.arch}`);
const canBuildCuda = args.has('--cpu-only') ? false
  : noBuild ? existsSync(join(root, 'native', 'build-cuda', 'Release', 'sparsify.node'))
  : hostBuild ? Boolean(haveNvcc()) : Boolean(toolkit);
if (!canBuildCuda) {
  if (targets.some((t) => t.cuda)) console.warn('[prebuild] no CUDA toolkit (or --cpu-only): the CUDA package is not built');
  targets = targets.filter((t) => !t.cuda);
}
if (!hostBuild && process.platform !== 'linux') throw new Error('release builds run on Linux (debootstrap + chroot)');
const built = hostBuild ? hostBuilds(targets) : releaseBuild(targets, toolkit);

const summary = [];
let failed = false;
for (const t of targets) {
  const src = built[t.pkg];
  const pkgDir = join(root, 'packages', t.pkg);
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  if (!existsSync(src)) throw new Error(`missing ${src}`);
  const outDir = join(pkgDir, 'prebuilds', t.plat);
  mkdirSync(outDir, { recursive: true });
  const dst = join(outDir, 'sparsify.napi.glibc.node');
  copyFileSync(src, dst);
  if (hostBuild) run('strip', ['--strip-unneeded', dst]);
  const declared = (pkg.config?.glibc ?? '>=0').replace('>=', '');
  const check = checkBinary(dst, hostBuild ? '999' : GLIBC_FLOOR);
  const problems = [...check.problems];
  if (!hostBuild && declared !== GLIBC_FLOOR) problems.push(`package.json config.glibc is >=${declared}, the release floor is ${GLIBC_FLOOR}`);
  if (hostBuild && check.glibcFloor !== '0' && declared && versionCompare(check.glibcFloor, declared) > 0)
    console.warn(`[prebuild] ${t.pkg}: host build needs glibc ${check.glibcFloor} (package says >=${declared}); it loads on this host only. \`npm run prebuilds\` makes the release build.`);
  if (check.machine !== ELF_MACHINE[t.plat]) problems.push(`ELF machine is ${check.machine}, expected ${ELF_MACHINE[t.plat]}`);
  if (pkg.version !== coreVersion) problems.push(`version ${pkg.version} differs from @sparsify/core ${coreVersion}`);
  let archs = [];
  if (t.cuda) {
    archs = fatbinArchs(dst);
    for (const want of GPU_CODE) if (!archs.includes(want)) problems.push(`GPU code ${want} missing (found ${archs.join(' ')})`);
  }
  for (const p of problems) console.error(`[prebuild] ${t.pkg}: ${p}`);
  failed ||= problems.length > 0;
  const info = {
    package: pkg.name, version: pkg.version, variant: t.cuda ? 'cuda' : 'cpu', napi: 8, machine: check.machine,
    glibcFloor: check.glibcFloor, needed: check.needed, bytes: statSync(dst).size,
    ...(t.cuda ? { gpuCode: archs, nvidiaDriver: pkg.config.nvidiaDriver, cuda: pkg.config.cuda } : {}),
    builtIn: hostBuild ? `host ${run('uname', ['-srm']).trim()}` : `debian ${SUITE} root (glibc ${GLIBC_FLOOR})`,
    builtAt: new Date().toISOString(),
  };
  writeFileSync(join(outDir, 'build-info.json'), JSON.stringify(info, null, 2) + '\n');
  summary.push(`${pkg.name.padEnd(34)} ${(info.bytes / 1e6).toFixed(1).padStart(6)} MB  needs glibc ${check.glibcFloor}  NEEDED ${check.needed.join(',')}` +
    (t.cuda ? `  gpu ${archs.join(' ')}` : '') + (problems.length ? '  FAILED' : ''));
}
console.log('[prebuild] packages:\n  ' + summary.join('\n  '));
process.exit(failed ? 1 : 0);
