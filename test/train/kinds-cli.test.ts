// `sparsify train --activation jumprelu | batchtopk` on the embedded default (one hookpoint, 40
// steps), then `sparsify eval` (FVU and L0 in the ranges docs/sae.md documents) and
// `sparsify features` on the trained run; a kind's run passes the --resume checks; the SAELens export
// through `sparsify convert`; bad flag combinations are usage errors naming the flag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { main } from '@sparsify/cli';
import { loadSaeLensCoder, SparseCoder, ThresholdCoder } from '@sparsify/core';
import { DEFAULT_ASSETS_DIR } from '@sparsify/train';

const QUICK = ['--hookpoints', 'h.0', '--batch_size', '4', '--max_examples', '160', '--lr', '0.004', '--lr_warmup_steps', '5'];

function capture() {
  const o = { out: '', err: '' };
  return { o, io: { stdout: { write: (s: string) => ((o.out += s), true) }, stderr: { write: (s: string) => ((o.err += s), true) } } };
}

const KINDS: { kind: string; name?: string; flags: string[]; fvuMax: number; l0: [number, number] }[] = [
  // Measured (docs/sae.md, with max_grad_norm 1.0): jumprelu fvu 0.051, L0 106.1 of 256; batchtopk fvu 0.150, L0 18.3.
  { kind: 'jumprelu', flags: ['--activation', 'jumprelu', '--l0_coefficient', '1', '--jumprelu_init_threshold', '0.5'], fvuMax: 0.1, l0: [70, 140] },
  { kind: 'batchtopk', flags: ['--activation', 'batchtopk', '-k', '16', '--topk_threshold_lr', '0.1'], fvuMax: 0.25, l0: [10, 30] },
  // SAELens's float k through eval, features and convert.
  { kind: 'batchtopk', name: 'batchtopk -k 12.5', flags: ['--activation', 'batchtopk', '-k', '12.5', '--topk_threshold_lr', '0.1'], fvuMax: 0.3, l0: [8, 20] },
];

for (const c of KINDS) {
  test(`${c.name ?? c.kind}: sparsify train -> eval -> features -> convert`, async () => {
    const dir = mkdtempSync(join(tmpdir(), `kinds-cli-${c.kind}-`));
    const { o, io } = capture();
    try {
      assert.equal(await main(['train', ...QUICK, ...c.flags, '--save_dir', dir, '--run_name', 'r'], io), 0, o.err);
      const run = join(dir, 'r');
      const cfg = JSON.parse(readFileSync(join(run, 'h.0', 'cfg.json'), 'utf8'));
      assert.equal(cfg.activation, c.kind);
      if (c.flags.includes('-k')) assert.equal(cfg.k, Number(c.flags[c.flags.indexOf('-k') + 1]), 'cfg.json keeps -k as given');
      const json = join(dir, 'eval.json');
      assert.equal(await main(['eval', run, DEFAULT_ASSETS_DIR, join(DEFAULT_ASSETS_DIR, 'corpus.jsonl'), '--max_examples', '16', '--batch_size', '4', '--ctx_len', '256', '--json', json], io), 0, o.err);
      const report = JSON.parse(readFileSync(json, 'utf8'));
      const h = JSON.stringify(report).includes('"h.0"') ? findHook(report, 'h.0') : undefined;
      assert.ok(h, `eval report has h.0: ${JSON.stringify(report).slice(0, 400)}`);
      const fvu = h.fvu as number, l0 = h.l0 as number;
      console.log(`# ${c.name ?? c.kind}: eval fvu ${fvu.toFixed(4)} l0 ${l0.toFixed(1)}`);
      assert.ok(fvu > 0 && fvu <= c.fvuMax, `fvu ${fvu}`);
      assert.ok(l0 >= c.l0[0] && l0 <= c.l0[1], `l0 ${l0}`);

      const out = join(dir, 'features');
      assert.equal(await main(['features', run, '--max_examples', '12', '--batch_size', '4', '--out', out], io), 0, o.err);
      const lines = readFileSync(join(out, 'h.0', 'features.jsonl'), 'utf8').trim().split('\n');
      assert.equal(lines.length, 256);
      const firing = lines.map((l) => JSON.parse(l)).filter((f) => f.top?.length > 0);
      assert.ok(firing.length > 100, `${firing.length} latents have top examples`);

      // SAELens export of the trained coder (batchtopk: a JumpReLU with the learned threshold).
      assert.equal(await main(['convert', '--to', 'saelens', join(run, 'h.0'), join(dir, 'sl')], io), 0, o.err);
      const sl = JSON.parse(readFileSync(join(dir, 'sl', 'cfg.json'), 'utf8'));
      assert.equal(sl.architecture, 'jumprelu');
      const ours = await SparseCoder.loadFromDisk(join(run, 'h.0'));
      const theirs = await loadSaeLensCoder(join(dir, 'sl'));
      assert.ok(theirs instanceof ThresholdCoder);
      if (c.kind === 'batchtopk') {
        const th = theirs.params().get('threshold')!.toFloat32Array();
        assert.ok(th.every((v) => v === ours.topkThreshold && v > 0), 'one shared, learned threshold');
      }
      ours.dispose();
      theirs.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** The per-hookpoint record of an eval report, wherever the report nests it. */
function findHook(report: unknown, name: string): Record<string, number> | undefined {
  if (!report || typeof report !== 'object') return undefined;
  const r = report as Record<string, unknown>;
  if (r.hookpoint === name || r.name === name) return r as Record<string, number>;
  if (name in r && typeof r[name] === 'object' && r[name] && 'fvu' in (r[name] as object)) return r[name] as Record<string, number>;
  for (const v of Object.values(r)) {
    const f = Array.isArray(v) ? v.map((x) => findHook(x, name)).find(Boolean) : findHook(v, name);
    if (f) return f;
  }
  return undefined;
}

test('jumprelu: log_threshold is trained, and the finished run passes the --resume checks (its checkpoint and optimizer state load back)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kinds-cli-resume-'));
  const { o, io } = capture();
  try {
    const args = ['train', '--hookpoints', 'h.0', '--batch_size', '4', '--max_examples', '24', '--activation', 'jumprelu', '--save_every', '3', '--save_dir', dir, '--run_name', 'r'];
    assert.equal(await main(args, io), 0, o.err);
    assert.ok(existsSync(join(dir, 'r', 'optimizer_0.safetensors')));
    const before = await SparseCoder.loadFromDisk(join(dir, 'r', 'h.0'));
    const lt0 = before.params().get('log_threshold')!.toFloat32Array();
    assert.ok(lt0.some((v) => v !== Math.fround(Math.log(0.01))), 'log_threshold was trained');
    before.dispose();
    assert.equal(await main([...args, '--resume'], io), 0, o.err);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SAELens-kind flags: bad combinations are usage errors naming the flag', async () => {
  const cases: [string[], RegExp][] = [
    [['--l1_coefficient', '2'], /--l1_coefficient applies to --activation relu only/],
    [['--activation', 'relu', '--l0_coefficient', '2'], /--l0_coefficient applies to --activation jumprelu only/],
    [['--activation', 'jumprelu', '--topk_threshold_lr', '0.1'], /--topk_threshold_lr applies to --activation batchtopk only/],
    [['--activation', 'relu', '--matryoshka_prefixes', '64', '128'], /matryoshka_prefixes needs activation "batchtopk" or "topk"/],
    [['--activation', 'relu', '--auxk_alpha', '0.03'], /auxk_alpha/],
    [['--activation', 'batchtopk', '--matryoshka_prefixes', '64', '32'], /strictly increasing/],
    [['--activation', 'jumprelu', '--transcode'], /transcode/],
    [['--activation', 'softmax'], /--activation/],
    [['--apply_b_dec_to_input', 'false'], /apply_b_dec_to_input false needs a SAELens kind/],
    [['-k', '16.5'], /--k: expected an integer, got "16\.5"/],
    [['--activation', 'groupmax', '-k', '16.5'], /--k: expected an integer, got "16\.5"/],
    [['--activation', 'batchtopk', '-k', '1e-6'], /-k 0\.000001: batchtopk keeps floor\(k · rows\) latents per step, and a micro-batch of \d+ rows .* keeps none/],
    [['--activation', 'batchtopk', '-k', '0'], /k must be a finite number > 0/],
    [['--lp_norm', '2'], /--lp_norm applies to --activation relu only/],
    [['--activation', 'relu', '--lp_norm', '0.5'], /lp_norm must be a finite number >= 1/],
  ];
  for (const [flags, want] of cases) {
    const { o, io } = capture();
    const dir = mkdtempSync(join(tmpdir(), 'kinds-cli-bad-'));
    try {
      assert.equal(await main(['train', ...flags, '--save_dir', dir], io), 2, `${flags.join(' ')}: ${o.err}`);
      assert.match(o.err, want, flags.join(' '));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});
