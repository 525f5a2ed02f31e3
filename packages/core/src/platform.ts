/**
 * What this machine is and what each prebuilt platform package needs: the loader's error when no
 * native binary fits (wrong platform, musl, a glibc older than a package's floor).
 */
import { existsSync, readdirSync } from 'node:fs';

/** A prebuilt platform package (the fields of its package.json; test/packaging checks they agree). */
export interface PlatformPackage {
  name: string;
  os: NodeJS.Platform;
  cpu: NodeJS.Architecture;
  /** Lowest glibc the binary loads on. */
  glibc: string;
  variant: 'cpu' | 'cuda';
  /** CUDA variant: what the GPU side needs. */
  gpu?: string;
}

export const PLATFORM_PACKAGES: readonly PlatformPackage[] = [
  { name: '@sparsify/native-linux-x64-cuda', os: 'linux', cpu: 'x64', glibc: '2.31', variant: 'cuda', gpu: 'NVIDIA driver >= 580, GPU sm_80 or newer' },
  { name: '@sparsify/native-linux-x64', os: 'linux', cpu: 'x64', glibc: '2.31', variant: 'cpu' },
  { name: '@sparsify/native-linux-arm64', os: 'linux', cpu: 'arm64', glibc: '2.31', variant: 'cpu' },
];

export interface LibcInfo {
  family: 'glibc' | 'musl' | 'none' | 'unknown';
  /** glibc's runtime version, when glibc. */
  version?: string;
}

/** The C library this process runs on (process.report names glibc's version; musl has none). */
export function detectLibc(): LibcInfo {
  if (process.platform !== 'linux') return { family: 'none' };
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string }; sharedObjects?: string[] } | undefined;
  const glibc = report?.header?.glibcVersionRuntime;
  if (glibc) return { family: 'glibc', version: glibc };
  if (report?.sharedObjects?.some((s) => /ld-musl|libc\.musl/.test(s))) return { family: 'musl' };
  try {
    if (readdirSync('/lib').some((f) => f.startsWith('ld-musl-'))) return { family: 'musl' };
  } catch {
    // no /lib: nothing more to learn
  }
  return { family: 'unknown' };
}

function versionBelow(a: string, b: string): boolean {
  const pa = a.split('.').map(Number), pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) < (pb[i] ?? 0);
  return false;
}

/** Why `pkg` cannot load here, or undefined when it should. */
export function misfit(pkg: PlatformPackage, platform: string, arch: string, libc: LibcInfo): string | undefined {
  if (pkg.os !== platform || pkg.cpu !== arch) return `built for ${pkg.os}-${pkg.cpu}, this is ${platform}-${arch}`;
  if (libc.family === 'musl') return 'needs glibc, this system uses musl';
  if (libc.family === 'glibc' && libc.version && versionBelow(libc.version, pkg.glibc)) return `needs glibc >= ${pkg.glibc}, found ${libc.version}`;
  return undefined;
}

function describeLibc(libc: LibcInfo): string {
  if (libc.family === 'glibc') return `glibc ${libc.version}`;
  if (libc.family === 'musl') return 'musl libc';
  if (libc.family === 'none') return 'no Linux libc';
  return 'libc not identified';
}

/**
 * The message of the loader's NativeLoadError: this platform and libc, what was tried, what
 * each prebuilt package needs (and why it does not fit), and how to build from source.
 */
export function noBinaryMessage(tried: readonly string[], repoRoot: string,
  here: { platform: string; arch: string; libc: LibcInfo } = { platform: process.platform, arch: process.arch, libc: detectLibc() }): string {
  const lines = [`Could not load the sparsify native addon on ${here.platform}-${here.arch} (${describeLibc(here.libc)}). Tried:`];
  for (const t of tried) lines.push(`  ${t}`);
  lines.push('Prebuilt packages (optional dependencies of @sparsify/core):');
  for (const pkg of PLATFORM_PACKAGES) {
    const needs = [`${pkg.os}-${pkg.cpu}`, `glibc >= ${pkg.glibc}`, ...(pkg.gpu ? [pkg.gpu] : [])].join(', ');
    const why = misfit(pkg, here.platform, here.arch, here.libc);
    lines.push(`  ${pkg.name}: needs ${needs}${why ? ` -> does not fit: ${why}` : ' -> fits this machine'}`);
  }
  const checkout = existsSync(`${repoRoot}/CMakeLists.txt`);
  lines.push(
    'Possible solutions:',
    '  - install the platform package: `npm install --include=optional @sparsify/core`',
    checkout
      ? `  - build from source in this checkout (needs g++ >= 10 or clang, cmake >= 3.18): \`cd ${repoRoot} && npm run build:native\``
      : '  - build from source (needs g++ >= 10 or clang, cmake >= 3.18): in a checkout of the sparsify repository run ' +
        '`npm install` (it builds native/build-cpu/Release/sparsify.node), then point SPARSIFY_NATIVE at that file',
    '  - set SPARSIFY_NATIVE=/path/to/sparsify.node',
  );
  return lines.join('\n');
}
