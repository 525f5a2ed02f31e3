/**
 * Runs the benchmark scripts and collects their sections into bench/RESULTS.md.
 *
 *   npm run bench                 every bench/*.ts except this one: gemm first, then alphabetically
 *   npm run bench -- gemm sae     only those (in the order given)
 *
 * Each script runs in its own child process (`node --conditions=sparsify-source --import tsx
 * bench/<area>.ts`), prints a markdown section on stdout and writes bench/out/<area>.{md,json}.
 * A failing script gets a FAILED section and a non-zero exit status at the end; the others still run.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { benchThreads, kernelsLine, loadLine, machineLine } from './lib/machine.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

function allAreas(): string[] {
  const names = readdirSync(here)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && f !== 'run.ts')
    .map((f) => f.slice(0, -3))
    .sort();
  return [...names.filter((n) => n === 'gemm'), ...names.filter((n) => n !== 'gemm')];
}

const requested = process.argv.slice(2).map((a) => a.replace(/^bench\//, '').replace(/\.ts$/, ''));
const available = allAreas();
for (const r of requested)
  if (!available.includes(r)) {
    console.error(`bench/run.ts: no benchmark '${r}' (have: ${available.join(', ')})`);
    process.exit(2);
  }
const areas = requested.length ? requested : available;
const threads = benchThreads();
const started = new Date();
const loadAtStart = loadLine();

const sections: string[] = [];
let failed = 0;
for (const area of areas) {
  console.error(`[bench] ${area} ...`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--conditions=sparsify-source', '--import', 'tsx', join('bench', `${area}.ts`)], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, SPARSIFY_BENCH_THREADS: String(threads) },
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  let section = (r.stdout ?? '').trim();
  const mdFile = join(here, 'out', `${area}.md`);
  if (!section && existsSync(mdFile)) section = readFileSync(mdFile, 'utf8').trim();
  if (r.status !== 0) {
    failed++;
    const why = r.error ? String(r.error) : `exit status ${r.status}${r.signal ? `, signal ${r.signal}` : ''}`;
    section = `## ${area}: FAILED (${why})\n\n${section}`;
  }
  console.error(`[bench] ${area}: ${r.status === 0 ? 'done' : 'FAILED'} in ${secs} s`);
  sections.push(section);
}

const envVars = ['SPARSIFY_BENCH_THREADS', 'SPARSIFY_BENCH_REPS', 'SPARSIFY_BENCH_PYTHON', 'SPARSIFY_GEMM']
  .filter((v) => process.env[v] !== undefined)
  .map((v) => `${v}=${process.env[v]} `)
  .join('');
const cmd = `${envVars}npm run bench${requested.length ? ` -- ${requested.join(' ')}` : ''}`;
const header = [
  '# Benchmark results',
  '',
  `- Date: ${started.toISOString().replace(/\.\d+Z$/, 'Z')}`,
  `- Machine: ${machineLine()}; load average at start (1/5/15 min): ${loadAtStart}`,
  `- Native threads: ${threads} (SPARSIFY_BENCH_THREADS)`,
  `- ${kernelsLine()}`,
  `- Node: ${process.version} (${process.platform}-${process.arch})`,
  `- Command: \`${cmd}\``,
  '',
  'Timings on a shared machine are noisy; each section says what it timed and how.',
  '',
].join('\n');
writeFileSync(join(here, 'RESULTS.md'), `${header}\n${sections.join('\n\n')}\n`);
console.error(`[bench] wrote bench/RESULTS.md (${areas.length} section(s), ${failed} failed)`);
process.exit(failed ? 1 : 0);
