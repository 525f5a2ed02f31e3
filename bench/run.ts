/**
 * Runs the benchmark scripts and collects their sections, with the goals of issue 11, into one file.
 *
 *   npm run bench                  every bench/*.ts except this one: gemm first, then alphabetically -> bench/RESULTS.md
 *   npm run bench -- gemm sae      only those (in the order given)
 *   npm run bench -- --avx2-pass   then sae, model and train again with SPARSIFY_GEMM=avx2 (the Zen path;
 *                                  gemm times the AVX2 kernels in its own run) -> also in RESULTS.md
 *   npm run bench -- --smoke       gemm, model, sae, train on tiny shapes, one repetition (checks the harness)
 *                                  -> bench/out/RESULTS-smoke.md unless --out is given
 *   npm run bench -- --out FILE    write the results there instead
 *   npm run bench:results          the full run that bench/RESULTS.md records (= --avx2-pass)
 *
 * Each script runs in its own child process (`node --conditions=sparsify-source --import tsx
 * bench/<area>.ts`), prints a markdown section on stdout and writes bench/out/<area>.{md,json}.
 * A failing script gets a FAILED section and a non-zero exit status at the end; the others still run.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { evaluateGoals, goalsTable } from './lib/goals.js';
import { benchThreads, kernelsLine, loadLine, machineLine } from './lib/machine.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
// Scripts whose figures depend on the GEMM kernel path; the AVX2 pass runs these again.
const AVX2_PASS_AREAS = ['sae', 'model', 'train'];
// Scripts with a --smoke mode (the ones the goals come from); a smoke run runs only these.
const SMOKE_AREAS = ['gemm', 'model', 'sae', 'train'];

function allAreas(): string[] {
  const names = readdirSync(here)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && f !== 'run.ts')
    .map((f) => f.slice(0, -3))
    .sort();
  return [...names.filter((n) => n === 'gemm'), ...names.filter((n) => n !== 'gemm')];
}

const argv = process.argv.slice(2);
const smoke = argv.includes('--smoke');
const avx2Pass = argv.includes('--avx2-pass');
const outIdx = argv.indexOf('--out');
if (outIdx >= 0 && !argv[outIdx + 1]) {
  console.error('bench/run.ts: --out needs a file name');
  process.exit(2);
}
const outFile = outIdx >= 0 ? resolve(argv[outIdx + 1]) : join(here, smoke ? join('out', 'RESULTS-smoke.md') : 'RESULTS.md');
const flags = new Set(['--smoke', '--avx2-pass', '--out']);
const requested = argv
  .filter((a, i) => !flags.has(a) && argv[i - 1] !== '--out')
  .map((a) => a.replace(/^bench\//, '').replace(/\.ts$/, ''));
const available = allAreas();
for (const r of requested)
  if (!available.includes(r)) {
    console.error(`bench/run.ts: no benchmark '${r}' (have: ${available.join(', ')}; flags: --smoke, --avx2-pass, --out FILE)`);
    process.exit(2);
  }
const areas = requested.length ? requested : smoke ? available.filter((a) => SMOKE_AREAS.includes(a)) : available;
const threads = benchThreads();
const started = new Date();
const loadAtStart = loadLine();

type Json = Record<string, unknown>;
interface Pass {
  sections: string[];
  /** The JSON each script wrote in this pass (absent when it failed). */
  data: Record<string, Json | undefined>;
}
let failed = 0;

function runPass(list: string[], env: NodeJS.ProcessEnv, label: string): Pass {
  const pass: Pass = { sections: [], data: {} };
  for (const area of list) {
    console.error(`[bench${label}] ${area} ...`);
    const t0 = Date.now();
    const jsonFile = join(here, 'out', `${area}.json`);
    rmSync(jsonFile, { force: true }); // so a failed script cannot leave an older run's figures behind
    const r = spawnSync(process.execPath, ['--conditions=sparsify-source', '--import', 'tsx', join('bench', `${area}.ts`), ...(smoke ? ['--smoke'] : [])], {
      cwd: root,
      encoding: 'utf8',
      env: { ...env, SPARSIFY_BENCH_THREADS: String(threads) },
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
    } else if (existsSync(jsonFile)) {
      pass.data[area] = JSON.parse(readFileSync(jsonFile, 'utf8')) as Json;
    }
    console.error(`[bench${label}] ${area}: ${r.status === 0 ? 'done' : 'FAILED'} in ${secs} s`);
    pass.sections.push(`${section}\n\n_(${area}: ${secs} s)_`);
  }
  return pass;
}

const main = runPass(areas, process.env, '');
const second = avx2Pass ? runPass(areas.filter((a) => AVX2_PASS_AREAS.includes(a)), { ...process.env, SPARSIFY_GEMM: 'avx2' }, ' avx2') : undefined;
const finished = new Date();

const envVars = ['SPARSIFY_BENCH_THREADS', 'SPARSIFY_BENCH_REPS', 'SPARSIFY_BENCH_PYTHON', 'SPARSIFY_BENCH_PYTHONPATH', 'SPARSIFY_GEMM']
  .filter((v) => process.env[v])
  .map((v) => `${v}=${process.env[v]} `)
  .join('');
const cmd = `${envVars}npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
const minutes = ((finished.getTime() - started.getTime()) / 60000).toFixed(1);
const goals = evaluateGoals(main.data);
const header = [
  smoke ? '# Benchmark results (smoke run: tiny shapes, one repetition; the figures say nothing about speed)' : '# Benchmark results',
  '',
  `- Date: ${started.toISOString().replace(/\.\d+Z$/, 'Z')} (${minutes} min)`,
  `- Machine: ${machineLine()}`,
  `- Load average (1/5/15 min): ${loadAtStart} at start, ${loadLine()} at end`,
  `- Native threads: ${threads} (SPARSIFY_BENCH_THREADS); the Python peers run at the same thread count`,
  `- ${kernelsLine()}${process.env.SPARSIFY_GEMM ? ` (SPARSIFY_GEMM=${process.env.SPARSIFY_GEMM})` : ''}`,
  `- Node: ${process.version} (${process.platform}-${process.arch})`,
  `- Command: \`${cmd}\``,
  '',
  'Every ratio below is ours / the peer (torch, transformers, Python sparsify) with both sides measured in this run,',
  'single runs alternated so both see the same load; a peer that was not available says "not measured".',
  'Timings on a shared machine are noisy; each section says what it timed and how.',
  '',
  '## Goals (issue 11, CPU)',
  '',
  goalsTable(goals, second ? { title: 'AVX2 path (SPARSIFY_GEMM=avx2)', goals: evaluateGoals({ ...main.data, ...second.data, gemm: avx2Gemm(main.data.gemm) }) } : undefined),
  '',
].join('\n');

/** gemm.json with the AVX2 column as the f32 figure (gemm.ts times the AVX2 kernels in its own run). */
function avx2Gemm(g: Json | undefined): Json | undefined {
  if (!g) return undefined;
  const rows = (g.rows as Json[]).map((r) => {
    const ref = r.ref_gflops as number | undefined;
    const a = r.ours_avx2_gflops as number | undefined;
    return { ...r, ratio_f32: a && ref ? a / ref : undefined };
  });
  return { ...g, rows, refNote: g.refNote || 'no AVX2 column (the automatic path is AVX2, or the CPU lacks it)' };
}

const avx2Sections = second?.sections.length
  ? ['# AVX2 path (SPARSIFY_GEMM=avx2), same run', '', 'The same scripts again with the AVX2 kernels forced, so the figures of AVX2-only machines (Zen 3) stay reproducible.', '', second.sections.join('\n\n')].join('\n')
  : '';
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, `${header}\n${main.sections.join('\n\n')}\n${avx2Sections ? `\n${avx2Sections}\n` : ''}`);
console.error(`[bench] wrote ${relative(root, outFile)} (${areas.length} section(s)${second ? ` + ${second.sections.length} AVX2` : ''}, ${failed} failed, ${minutes} min)`);
process.exit(failed ? 1 : 0);
