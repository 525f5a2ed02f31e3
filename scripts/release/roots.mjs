// Debian bullseye roots (glibc 2.31) for release builds and release checks, made with debootstrap
// and cached under $SPARSIFY_ROOTS_DIR (default ~/.cache/sparsify/roots).
//   build-amd64    g++ 10, cmake 3.18, the aarch64 cross toolchain: builds every release binary
//   clean-amd64    minbase, no compiler: where the packed tarballs are installed and run
//   clean-arm64    the same for arm64, run under qemu-user-static (binfmt_misc)
// A build root is kept as a folder and reused; a clean root is kept as a tarball and unpacked
// into a fresh folder for every check. Needs root (debootstrap, chroot, mount).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const SUITE = 'bullseye';
/** glibc of bullseye: the floor the release binaries are built for and checked against. */
export const GLIBC_FLOOR = '2.31';
export const rootsDir = process.env.SPARSIFY_ROOTS_DIR ?? join(homedir(), '.cache', 'sparsify', 'roots');

const ROOTS = {
  'build-amd64': { arch: 'amd64', include: ['g++', 'cmake', 'make', 'g++-aarch64-linux-gnu', 'binutils-aarch64-linux-gnu'], kept: 'folder' },
  'clean-amd64': { arch: 'amd64', include: [], kept: 'tarball' },
  'clean-arm64': { arch: 'arm64', include: [], kept: 'tarball' },
};

export function log(msg) {
  console.log(`[release] ${msg}`);
}

export function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 1 << 28, ...opts });
  if (r.error || r.status !== 0) {
    const out = opts.stdio === 'inherit' ? '' : `\n${r.stdout ?? ''}\n${r.stderr ?? ''}`;
    throw new Error(`${cmd} ${argv.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`})${out}`);
  }
  return r.stdout;
}

const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** Installs the host tools the release scripts use (a fresh CI machine has none of them). */
export function ensureHostTools({ qemu = false } = {}) {
  if (process.getuid?.() !== 0) throw new Error('release builds need root (debootstrap, chroot, mount)');
  const want = [['debootstrap', 'debootstrap'], ['readelf', 'binutils'], ['zstd', 'zstd'], ...(qemu ? [['qemu-aarch64-static', 'qemu-user-static'], ['update-binfmts', 'binfmt-support']] : [])];
  const missing = want.filter(([cmd]) => !have(cmd)).map(([, pkg]) => pkg);
  if (missing.length) {
    log(`apt-get install ${missing.join(' ')}`);
    run('apt-get', ['update', '-q'], { stdio: 'inherit' });
    run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  if (qemu) enableBinfmt();
}

// arm64 executables in a chroot run through binfmt_misc's qemu-aarch64 entry (the interpreter
// is copied into the root by the caller, since Debian registers it without the F flag).
function enableBinfmt() {
  const dir = '/proc/sys/fs/binfmt_misc';
  if (!existsSync(join(dir, 'register'))) run('mount', ['-t', 'binfmt_misc', 'binfmt_misc', dir]);
  if (!existsSync(join(dir, 'qemu-aarch64'))) run('update-binfmts', ['--enable', 'qemu-aarch64']);
  if (!existsSync(join(dir, 'qemu-aarch64'))) throw new Error('binfmt_misc has no qemu-aarch64 entry (is qemu-user-static installed?)');
}

/** The Debian mirror apt uses on this host ($SPARSIFY_DEBIAN_MIRROR overrides). */
export function debianMirror() {
  if (process.env.SPARSIFY_DEBIAN_MIRROR) return process.env.SPARSIFY_DEBIAN_MIRROR;
  const files = ['/etc/apt/sources.list', ...(existsSync('/etc/apt/sources.list.d') ? readdirSync('/etc/apt/sources.list.d').filter((f) => /\.(list|sources)$/.test(f)).map((f) => join('/etc/apt/sources.list.d', f)) : [])];
  for (const f of files) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    const m = text.match(/^\s*URIs:\s*(\S+\/debian)\/?\s*$/m) ?? text.match(/^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s/m);
    if (m) return m[1];
  }
  return 'http://deb.debian.org/debian';
}

export const stamp = (name) => JSON.stringify({ suite: SUITE, ...ROOTS[name] });

function debootstrap(name, dir) {
  const spec = ROOTS[name];
  const foreign = spec.arch !== 'amd64';
  const argv = ['--variant=minbase', `--arch=${spec.arch}`, ...(foreign ? ['--foreign'] : []),
    ...(spec.include.length ? [`--include=${spec.include.join(',')}`] : []), SUITE, dir, debianMirror()];
  log(`debootstrap ${argv.join(' ')}`);
  run('debootstrap', argv, { stdio: 'inherit' });
  if (foreign) {
    installQemu(dir);
    run('chroot', [dir, '/debootstrap/debootstrap', '--second-stage'], { stdio: 'inherit' });
  }
  run('chroot', [dir, 'apt-get', 'clean']);
  writeFileSync(join(dir, '.sparsify-root.json'), stamp(name) + '\n');
}

/** Puts qemu-aarch64-static where binfmt_misc looks for it inside the root. */
export function installQemu(dir) {
  const target = join(dir, 'usr', 'libexec', 'qemu-binfmt');
  mkdirSync(target, { recursive: true });
  copyFileSync('/usr/bin/qemu-aarch64-static', join(target, 'aarch64-binfmt-P'));
}

/** The cached build root (created on first use). */
export function buildRoot() {
  const dir = join(rootsDir, 'build-amd64');
  const stampFile = join(dir, '.sparsify-root.json');
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === stamp('build-amd64')) return dir;
  mkdirSync(rootsDir, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  debootstrap('build-amd64', tmp);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return dir;
}

/** A fresh copy of a clean root in `dest` (the cached tarball is created on first use). */
export function freshCleanRoot(name, dest) {
  const tarball = join(rootsDir, `${name}.tar.zst`);
  const stampFile = `${tarball}.json`;
  if (!existsSync(tarball) || !existsSync(stampFile) || readFileSync(stampFile, 'utf8').trim() !== stamp(name)) {
    mkdirSync(rootsDir, { recursive: true });
    const tmp = join(rootsDir, `${name}.tmp-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    try {
      debootstrap(name, tmp);
      run('tar', ['--zstd', '-cf', `${tarball}.tmp`, '-C', tmp, '.']);
      renameSync(`${tarball}.tmp`, tarball);
      writeFileSync(stampFile, stamp(name) + '\n');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  mkdirSync(dest, { recursive: true });
  run('tar', ['--zstd', '-xf', tarball, '-C', dest]);
  return dest;
}

/**
 * Runs fn() with /proc, /dev and `binds` ([hostPath, pathInRoot, {readOnly}]) mounted in the
 * root; unmounts them afterwards, also when fn throws.
 */
export function withMounts(rootDir, binds, fn) {
  const mounted = [];
  const mount = (argv, target) => {
    run('mount', [...argv, target]);
    mounted.push(target);
  };
  try {
    copyFileSync('/etc/resolv.conf', join(rootDir, 'etc', 'resolv.conf'));
    mount(['-t', 'proc', 'proc'], join(rootDir, 'proc'));
    mount(['--rbind', '/dev'], join(rootDir, 'dev'));
    for (const [host, inRoot, opts = {}] of binds) {
      const target = join(rootDir, inRoot);
      if (!existsSync(target)) {
        if (readdirSafe(host)) mkdirSync(target, { recursive: true });
        else { mkdirSync(join(target, '..'), { recursive: true }); writeFileSync(target, ''); }
      }
      mount(['--bind', host], target);
      if (opts.readOnly) run('mount', ['-o', 'remount,bind,ro', target]);
    }
    return fn();
  } finally {
    for (const target of mounted.reverse()) {
      const r = spawnSync('umount', ['-R', target]);
      if (r.status !== 0) spawnSync('umount', ['-l', '-R', target]);
    }
  }
}

function readdirSafe(p) {
  try {
    readdirSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Runs argv inside the root, in folder `cwd` of the root, with exactly `env`. Returns stdout. */
export function inRoot(rootDir, cwd, argv, env, opts = {}) {
  // Resolved with the host's PATH: `env` is the root's.
  const chroot = spawnSync('sh', ['-c', 'command -v chroot'], { encoding: 'utf8' }).stdout.trim() || '/usr/sbin/chroot';
  return run(chroot, [rootDir, '/bin/sh', '-c', 'cd "$0" && exec "$@"', cwd, ...argv], { env, timeout: 3_600_000, killSignal: 'SIGKILL', ...opts });
}

/**
 * Gives the root the host's CA bundle (hosts behind a TLS-inspecting proxy need it to reach the
 * npm registry); returns its path inside the root, or undefined when the host has none.
 */
export function trustHostCertificates(rootDir) {
  const bundle = [process.env.NODE_EXTRA_CA_CERTS, process.env.SSL_CERT_FILE, '/etc/ssl/certs/ca-certificates.crt'].find((f) => f && existsSync(f));
  if (!bundle) return undefined;
  mkdirSync(join(rootDir, 'etc', 'ssl', 'certs'), { recursive: true });
  copyFileSync(bundle, join(rootDir, 'etc', 'ssl', 'certs', 'ca-certificates.crt'));
  return '/etc/ssl/certs/ca-certificates.crt';
}

/** Removes a root folder, refusing while anything is still mounted below it. */
export function removeRoot(dir) {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter(Boolean);
  const busy = mounts.filter((m) => m === dir || m.startsWith(`${dir}/`));
  if (busy.length) throw new Error(`not removing ${dir}: still mounted: ${busy.join(', ')}`);
  rmSync(dir, { recursive: true, force: true });
}
