// The feature pass against a brute-force dense computation (every activation of every token
// materialised) on the tiny GPT-2, for an SAE (h.0) and a transcoder (h.0.mlp).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { loadSafetensors, readUnembedding, type LanguageModel, type SparseCoder, type Unembedding } from '@sparsify/core';
import { FeatureFile, runFeaturePass, TopExamples, type FeatureRecord } from '@sparsify/train';

import { denseCode, fixtureDataset, loadFixture, MODEL_DIR, r6, referenceTopK, type Dense } from './helpers.ts';

const K = 20, BINS = 50, NQ = 5, QS = 5;

function readRecords(dir: string, name: string): FeatureRecord[] {
  const lines = readFileSync(join(dir, name, 'features.jsonl'), 'utf-8').trim().split('\n');
  // Each line is exactly what JSON.stringify writes for its object.
  for (const l of lines.slice(0, 50)) assert.equal(JSON.stringify(JSON.parse(l)), l);
  return lines.map((l) => JSON.parse(l));
}

function windowOf(d: Dense, i: number, n: number, W: number) {
  const row = Math.floor(n / d.T), pos = n % d.T;
  const w = Math.min(W, d.T);
  const start = d.T <= W ? 0 : Math.max(0, Math.min(d.T - w, pos - (w >> 1)));
  const tokens: number[] = [], values: number[] = [];
  for (let p = start; p < start + w; p++) {
    tokens.push(d.tokens[row * d.T + p]);
    values.push(r6(d.acts[(row * d.T + p) * d.M + i]));
  }
  return { row, pos, start, tokens, values };
}

/** Checks every record of the pass against the dense matrix. */
function checkAgainstDense(records: FeatureRecord[], d: Dense, W: number) {
  const evaluated = d.N - d.ignored.reduce((a, b) => a + b, 0);
  assert.equal(records.length, d.M);
  let checkedTop = 0;
  for (let i = 0; i < d.M; i++) {
    const rec = records[i];
    assert.equal(rec.index, i);
    const firing: { n: number; a: number }[] = [];
    let sum = 0;
    for (let n = 0; n < d.N; n++) {
      const a = d.acts[n * d.M + i];
      if (a > 0) {
        firing.push({ n, a });
        sum += a;
      }
    }
    assert.equal(rec.count, firing.length, `latent ${i} count`);
    assert.equal(rec.frac_nonzero, r6(firing.length / evaluated), `latent ${i} frac_nonzero`);
    const max = firing.reduce((m, f) => Math.max(m, f.a), 0);
    const min = firing.reduce((m, f) => Math.min(m, f.a), Infinity);
    assert.equal(rec.max_act, r6(max), `latent ${i} max`);
    assert.equal(rec.mean_act, firing.length ? r6(sum / firing.length) : 0, `latent ${i} mean`);
    // Top: highest first, ties by earlier token (row, then position).
    const sorted = [...firing].sort((x, y) => y.a - x.a || x.n - y.n).slice(0, K);
    assert.deepEqual(rec.top, sorted.map((f) => ({ ...windowOf(d, i, f.n, W), act: r6(f.a) })).map(({ row, pos, start, tokens, values, act }) => ({ row, pos, act, start, tokens, values })), `latent ${i} top`);
    checkedTop += rec.top.length;
    // Histogram of the firing values over [min, max].
    const counts = new Array(BINS).fill(0);
    for (const f of firing) counts[max > min ? Math.max(0, Math.min(BINS - 1, Math.floor(((f.a - min) / (max - min)) * BINS))) : 0]++;
    assert.deepEqual(rec.histogram.counts, counts, `latent ${i} histogram`);
    // Interval groups: equal-width bins of (0, max], highest first; samples drawn from the right bin.
    if (!firing.length) {
      assert.deepEqual(rec.quantiles, []);
      continue;
    }
    const binOf = (a: number) => Math.min(NQ - 1, Math.floor((a / Math.fround(max)) * NQ));
    assert.equal(rec.quantiles.length, NQ);
    for (let g = 0; g < NQ; g++) {
      const b = NQ - 1 - g;
      const members = firing.filter((f) => binOf(f.a) === b);
      const q = rec.quantiles[g];
      assert.equal(q.count, members.length, `latent ${i} interval ${b} count`);
      assert.equal(q.contains, members.length / evaluated);
      assert.equal(q.examples.length, Math.min(QS, members.length));
      const keys = new Set(q.examples.map((e) => e.row * d.T + e.pos));
      assert.equal(keys.size, q.examples.length, 'samples are distinct tokens');
      for (const e of q.examples) {
        const n = e.row * d.T + e.pos;
        assert.equal(binOf(d.acts[n * d.M + i]), b);
        assert.deepEqual(e, { ...windowOf(d, i, n, W), act: r6(d.acts[n * d.M + i]) });
      }
    }
  }
  assert.ok(checkedTop > 1000, 'the fixture exercises many top examples');
}

/** Logit effects in double precision straight from the checkpoint: centred W_dec row x ln_f gain, times W_U. */
function checkLogits(records: FeatureRecord[], coder: SparseCoder) {
  const t = loadSafetensors(join(MODEL_DIR, 'model.safetensors'), { names: ['transformer.wte.weight', 'transformer.ln_f.weight'] });
  const WU = t.get('transformer.wte.weight')!.toFloat32Array();
  const g = t.get('transformer.ln_f.weight')!.toFloat32Array();
  for (const x of t.values()) x.dispose();
  const wDec = coder.params().get('W_dec')!.toFloat32Array();
  const D = coder.dIn, V = WU.length / D;
  for (const i of [0, 1, 7, 100, 511]) {
    const row = wDec.subarray(i * D, (i + 1) * D);
    const mean = row.reduce((a, b) => a + b, 0) / D;
    const v = Array.from({ length: V }, (_, tok) => {
      let s = 0;
      for (let j = 0; j < D; j++) s += (row[j] - mean) * g[j] * WU[tok * D + j];
      return s;
    });
    const desc = v.map((_, tok) => tok).sort((a, b) => v[b] - v[a] || a - b);
    const rec = records[i];
    assert.equal(rec.logits.pos.length, 10);
    assert.equal(rec.logits.neg.length, 10);
    rec.logits.pos.forEach((e, j) => {
      assert.ok(Math.abs(e.value - v[desc[j]]) < 1e-4 * (1 + Math.abs(v[desc[j]])), `latent ${i} pos ${j}`);
      if (Math.abs(v[desc[j]] - v[desc[j + 1]]) > 1e-4 && (j === 0 || Math.abs(v[desc[j]] - v[desc[j - 1]]) > 1e-4)) assert.equal(e.token, desc[j]);
    });
    const asc = [...desc].reverse();
    rec.logits.neg.forEach((e, j) => assert.ok(Math.abs(e.value - v[asc[j]]) < 1e-4 * (1 + Math.abs(v[asc[j]])), `latent ${i} neg ${j}`));
    assert.equal(rec.logits.histogram!.counts.reduce((a, b) => a + b, 0), V);
  }
}

describe('feature pass vs dense', () => {
  let model: LanguageModel, sae: SparseCoder, transcoder: SparseCoder, unembedding: Unembedding;
  const tmp = mkdtempSync(join(tmpdir(), 'features-pass-'));
  before(async () => {
    ({ model, sae, transcoder } = await loadFixture());
    unembedding = readUnembedding(model.path, model.config as Record<string, unknown>);
  });
  after(() => {
    sae.dispose();
    transcoder.dispose();
    model.dispose();
    unembedding.weight.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  for (const kind of ['sae', 'transcoder'] as const) {
    test(`${kind}: top contexts, frequencies, histograms, intervals and logit effects equal the dense computation`, async () => {
      const coder = kind === 'sae' ? sae : transcoder;
      const hookpoint = kind === 'sae' ? 'h.0' : 'h.0.mlp';
      const ds = fixtureDataset();
      // One common token is ignored (as the CLI does with BOS/EOS): it never fires, its values are 0.
      const ignore = [ds.rows([0])[3]];
      const out = join(tmp, kind);
      const summary = await runFeaturePass([{ name: hookpoint, hookpoint, coder }], model, ds, out, {
        ignoreTokens: ignore,
        unembedding,
        batchSize: 5, // batches that do not divide the rows
        scratchDir: join(out, '.scratch'),
      });
      const d = await denseCode(model, coder, hookpoint, ds, ignore);
      assert.ok(d.ignored.some((v) => v), 'the fixture has ignored tokens');
      assert.equal(summary.tokens, d.N - d.ignored.reduce((a, b) => a + b, 0));
      // The native code is sparsify's TopK: check it against a double-precision reference first.
      const ref = referenceTopK(coder, d.x, 256);
      for (let n = 0; n < 256; n++) {
        if (ref.kth[n] - ref.next[n] < 1e-4) continue; // a near tie at the k-th place
        const got = new Set<number>();
        for (let i = 0; i < d.M; i++) if (d.acts[n * d.M + i] > 0 || (d.ignored[n] && ref.sets[n].has(i))) got.add(i);
        if (!d.ignored[n]) assert.deepEqual(got, ref.sets[n], `token ${n}`);
      }
      const records = readRecords(out, hookpoint);
      checkAgainstDense(records, d, 64);
      checkLogits(records, coder);
      // The summary and the random access reader agree with the file.
      const f = new FeatureFile(out, hookpoint);
      assert.deepEqual(f.read(17), records[17]);
      assert.deepEqual(f.summary.count, records.map((r) => r.count));
    });
  }

  test('windows around the position when rows are longer than the window; runs repeat exactly', async () => {
    const ds = fixtureDataset(24);
    const run = async (dir: string) => {
      await runFeaturePass([{ name: 'h.0', hookpoint: 'h.0', coder: sae }], model, ds, dir, { window: 16, top: 7, scratchDir: join(dir, '.s'), batchSize: 24 });
      return readFileSync(join(dir, 'h.0', 'features.jsonl'), 'utf-8');
    };
    const a = await run(join(tmp, 'w1'));
    const d = await denseCode(model, sae, 'h.0', ds, []);
    const records = a.trim().split('\n').map((l) => JSON.parse(l) as FeatureRecord);
    for (let i = 0; i < d.M; i += 13) {
      const firing: { n: number; a: number }[] = [];
      for (let n = 0; n < d.N; n++) if (d.acts[n * d.M + i] > 0) firing.push({ n, a: d.acts[n * d.M + i] });
      firing.sort((x, y) => y.a - x.a || x.n - y.n);
      assert.deepEqual(records[i].top.map((e) => ({ row: e.row, pos: e.pos, start: e.start, tokens: e.tokens, values: e.values })), firing.slice(0, 7).map((f) => windowOf(d, i, f.n, 16)));
      for (const e of records[i].top) assert.equal(e.tokens.length, 16);
    }
    // A different batch size gives byte-identical output (the sampling is seeded, ties are fixed).
    const b = await (async () => {
      const dir = join(tmp, 'w2');
      await runFeaturePass([{ name: 'h.0', hookpoint: 'h.0', coder: sae }], model, ds, dir, { window: 16, top: 7, scratchDir: join(dir, '.s'), batchSize: 3 });
      return readFileSync(join(dir, 'h.0', 'features.jsonl'), 'utf-8');
    })();
    assert.equal(b, a);
  });
});

describe('TopExamples', () => {
  test('keeps the K highest with ties broken by earlier (row, pos), whatever the offer order', () => {
    const offers: [number, number, number][] = [];
    for (let r = 0; r < 6; r++) for (let p = 0; p < 5; p++) offers.push([[1, 2, 2, 3, 2][p] + (r % 2), r, p]);
    const expected = [...offers].sort((a, b) => b[0] - a[0] || a[1] - b[1] || a[2] - b[2]).slice(0, 8).map(([act, row, pos]) => ({ act, row, pos }));
    for (let s = 0; s < 5; s++) {
      const order = [...offers];
      for (let i = order.length - 1; i > 0; i--) {
        const j = (i * 7919 + s * 104729) % (i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      const h = new TopExamples(1, 8);
      for (const [a, r, p] of order) h.offer(0, a, r, p);
      assert.deepEqual(h.sorted(0), expected);
    }
  });
});
