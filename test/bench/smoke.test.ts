// The benchmark harness in its smoke mode (tiny shapes, one repetition) without any Python peer:
// every section runs, and every comparison with a peer says "not measured" instead of a ratio.
// Also the goals of issue 11 computed from synthetic bench JSON (met / not met / not measured).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { evaluateGoals, goalsTable } from '../../bench/lib/goals.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

test('npm run bench -- --smoke --avx2-pass without Python: all sections, peers not measured', { timeout: 300_000 }, () => {
  const out = join(mkdtempSync(join(tmpdir(), 'spx-bench-smoke-')), 'RESULTS.md');
  const env: NodeJS.ProcessEnv = { ...process.env, SPARSIFY_BENCH_PYTHON: 'none' };
  delete env.SPARSIFY_GEMM; // the first pass takes the automatic kernel choice
  const r = spawnSync(process.execPath, ['--conditions=sparsify-source', '--import', 'tsx', 'bench/run.ts', '--smoke', '--avx2-pass', '--out', out], {
    cwd: root,
    encoding: 'utf8',
    env,
  });
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  const md = readFileSync(out, 'utf8');
  assert.match(md, /^# Benchmark results \(smoke run/);
  assert.match(md, /- Machine: .+, \d+ logical cores/);
  assert.match(md, /- CPU GEMM kernels: (avx512|avx2|portable) /);
  assert.match(md, /Command: `SPARSIFY_BENCH_PYTHON=none npm run bench -- --smoke --avx2-pass --out /);
  for (const title of ['## GEMM (dense CPU matmul)', '## Model forward (CPU)', '## Sparse coder throughput', '## Training throughput'])
    assert.ok(md.includes(title), `missing section ${title}`);
  // Every section header names the CPU and the kernel path.
  assert.ok((md.match(/^Machine: /gm) ?? []).length >= 7, 'each section (4 + 3 AVX2) starts with the machine line');
  assert.ok((md.match(/^CPU GEMM kernels: avx2 .*\(SPARSIFY_GEMM=avx2\)/gm) ?? []).length === 3, 'the AVX2 pass runs sae, model and train on the AVX2 kernels');
  assert.ok(!/FAILED/.test(md));
  // No ratio against a peer anywhere: every goal row and every peer cell says not measured.
  const goalRows = md.slice(md.indexOf('## Goals'), md.indexOf('## GEMM')).split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| goal'));
  assert.equal(goalRows.length, 7, goalRows.join('\n')); // 1 gemm shape, 4 SAE, LM forward, bf16
  for (const row of goalRows) {
    assert.match(row, /not measured/);
    assert.doesNotMatch(row, /\bmet\b/);
  }
  assert.match(md, /transformers: not measured in this run \(no Python reference requested/);
  assert.match(md, /sparsify: not measured in this run \(no Python reference requested/);
  assert.match(md, /\| gpt2 \| [\d,]+ \| not measured \| not measured \|/);
  assert.match(md, /\| 64 \| 512 \| 8 \| 256 \| [\d,]+ \(not measured\) \|/);
  assert.match(md, /signum \| [\d,]+ \| [\d.]+ \| not measured \| - \| - \|/);
});

test('goals: ratios of both sides of one run, met and not met; a missing peer or row is not measured', () => {
  const pair = (ours: number, sparsify?: number) => ({ ours, sparsify });
  const goals = evaluateGoals({
    gemm: { refNote: '', rows: [{ name: 'a', ratio_f32: 1.02 }, { name: 'b', ratio_f32: 0.9 }] },
    sae: {
      refNote: '',
      rows: [
        { d: 768, m: 24576, k: 32, encode: pair(1400, 1000), forward: pair(1600, 1000), train: pair(2000, 1000), trainAuxk: pair(900), encodeBf16: 2100 },
      ],
    },
    model: { refNote: 'torch missing', rows: [{ name: 'GPT-2-small shape', ratio: undefined }] },
  });
  const by = (name: string) => goals.find((g) => g.goal.startsWith(name))!;
  assert.equal(by('GEMM f32 vs torch: a').ratio, 1.02);
  assert.equal(by('SAE encode 768x24576').ratio, 1.4);
  assert.equal(by('SAE forward').ratio, 1.6);
  assert.equal(by('SAE training step (signum) ').ratio, 2);
  assert.equal(by('SAE training step (signum, AuxK').ratio, undefined);
  assert.equal(by('GPT-2-small').note, 'torch missing');
  assert.equal(by('bf16 encode').ratio, 2.1);
  const table = goalsTable(goals);
  assert.match(table, /GEMM f32 vs torch: a \| >= 1x \| 1\.02x met \|/);
  assert.match(table, /GEMM f32 vs torch: b \| >= 1x \| 0\.90x not met \|/);
  assert.match(table, /SAE forward 768x24576, k 32 \| >= 1\.5x \| 1\.60x met \|/);
  assert.match(table, /SAE training step \(signum\) 768x24576, k 32 \| >= 2\.5x \| 2\.00x not met \|/);
  assert.match(table, /AuxK 10% dead\) 768x24576, k 32 \| >= 2\.5x \| not measured/);
  assert.match(table, /bf16 encode vs sparsify f32 encode 768x24576, k 32 \| >= 2x \| 2\.10x met \|/);
  const none = evaluateGoals({});
  assert.ok(none.every((g) => g.ratio === undefined && /did not run/.test(g.note ?? '')));
});
