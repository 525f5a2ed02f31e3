// What a built .node needs from the machine it loads on, read with readelf (target-independent,
// so it reads the aarch64 binary on an x64 host too).
import { spawnSync } from 'node:child_process';

/** Shared libraries every glibc system has (they are glibc itself). Anything else is refused. */
export const SYSTEM_LIBRARIES = new Set([
  'libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1',
  'ld-linux-x86-64.so.2', 'ld-linux-aarch64.so.1',
]);

function readelf(args, file) {
  const r = spawnSync('readelf', ['-W', ...args, file], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.error || r.status !== 0) throw new Error(`readelf ${args.join(' ')} ${file} failed: ${r.error?.message ?? r.stderr}`);
  return r.stdout;
}

export function versionCompare(a, b) {
  const pa = a.split('.').map(Number), pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

/** DT_NEEDED entries. */
export function neededLibraries(file) {
  return [...readelf(['-d'], file).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
}

/** Symbol versions the binary requires, per library (the .gnu.version_r section). */
export function versionNeeds(file) {
  const out = {};
  let lib;
  for (const line of readelf(['-V'], file).split('\n')) {
    const f = line.match(/File:\s+(\S+)/);
    if (f) { lib = f[1]; out[lib] ??= []; continue; }
    const n = line.match(/Name:\s+(\S+)/);
    if (n && lib && line.includes('Flags:')) out[lib].push(n[1]);
  }
  return out;
}

/** The ELF machine ('Advanced Micro Devices X86-64', 'AArch64', ...). */
export function elfMachine(file) {
  return readelf(['-h'], file).match(/Machine:\s+(.+)/)?.[1].trim() ?? 'unknown';
}

/**
 * Checks a release binary: it needs no glibc symbol version above `floor`, no libstdc++/libgcc
 * symbol versions, and only SYSTEM_LIBRARIES. Returns the measured facts and the problems found.
 */
export function checkBinary(file, floor) {
  const needed = neededLibraries(file);
  const needs = versionNeeds(file);
  const glibc = Object.values(needs).flat().filter((v) => v.startsWith('GLIBC_') && /^GLIBC_[0-9.]+$/.test(v)).map((v) => v.slice(6));
  const glibcMax = glibc.sort(versionCompare).at(-1) ?? '0';
  const problems = [];
  if (versionCompare(glibcMax, floor) > 0) {
    const over = Object.entries(needs).flatMap(([lib, vs]) => vs.filter((v) => v.startsWith('GLIBC_') && versionCompare(v.slice(6), floor) > 0).map((v) => `${v} (${lib})`));
    problems.push(`needs glibc ${glibcMax} > floor ${floor}: ${[...new Set(over)].join(', ')}`);
  }
  const foreign = needed.filter((l) => !SYSTEM_LIBRARIES.has(l));
  if (foreign.length) problems.push(`links shared libraries a user may lack: ${foreign.join(', ')}`);
  const cxx = Object.values(needs).flat().filter((v) => /^(GLIBCXX|CXXABI|GCC)_/.test(v));
  if (cxx.length) problems.push(`needs C++ runtime symbol versions (libstdc++/libgcc must be static): ${[...new Set(cxx)].join(', ')}`);
  return { needed, glibcFloor: glibcMax, machine: elfMachine(file), problems };
}
