// Bad input on the SAELens-side commands (convert, pretokenize, TransformerLens hook names):
// usage and config errors exit 2, file and dataset errors exit 1, never with a stack trace, and
// a failed command leaves no destination folder (nor a temporary one) behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { SparseCoder } from '@sparsify/core';
import { main } from '@sparsify/cli';
import { DEFAULT_ASSETS_DIR } from '@sparsify/train';

const FIX = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'saelens');
const CORPUS = join(DEFAULT_ASSETS_DIR, 'corpus.jsonl');

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const o = { out: '', err: '' };
  const code = await main(argv, { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s) } });
  return { code, ...o };
}

async function expectFailure(argv: string[], code: number, msg: RegExp): Promise<void> {
  const r = await run(argv);
  const what = argv.join(' ');
  assert.equal(r.code, code, `${what}: exit code (stderr: ${r.err})`);
  assert.match(r.err, msg, what);
  assert.match(r.err, /(^|\n)sparsify: error: /, `${what}: a user error, not an unexpected one`);
  assert.doesNotMatch(r.err, /unexpected error/, what);
  assert.doesNotMatch(r.err, /\n\s+at .*:\d+:\d+/, `${what}: no stack trace`);
}

/** The folder's entries: no DST, no `.DST.tmp-*` sibling. */
function assertOnly(dir: string, names: string[], what: string): void {
  assert.deepEqual(readdirSync(dir).sort(), [...names].sort(), `${what}: nothing else left in ${dir}`);
}

test('convert: bad SRC / DST, corrupt coders; DST is never created or mixed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-convert-faults-'));
  try {
    const c = await SparseCoder.create(8, { expansionFactor: 2, k: 2 }, { seed: 1 });
    await c.saveToDisk(join(dir, 'run', 'h.0'));
    await c.saveToDisk(join(dir, 'run', 'h.1'));
    c.dispose();
    writeFileSync(join(dir, 'file'), 'x');
    mkdirSync(join(dir, 'full'));
    writeFileSync(join(dir, 'full', 'keep.txt'), 'mine');
    mkdirSync(join(dir, 'emptydir'));
    const base = ['file', 'full', 'emptydir', 'run'];

    await expectFailure(['convert', '--to', 'saelens', join(dir, 'run'), join(dir, 'full')], 2, /full already exists \(convert never replaces a folder\)/);
    assert.equal(readFileSync(join(dir, 'full', 'keep.txt'), 'utf-8'), 'mine');
    assertOnly(join(dir, 'full'), ['keep.txt'], 'existing DST');
    await expectFailure(['convert', '--to', 'saelens', join(dir, 'run'), join(dir, 'emptydir')], 2, /emptydir already exists/);
    await expectFailure(['convert', '--to', 'saelens', join(dir, 'run'), join(dir, 'file')], 2, /file already exists/);
    assert.equal(readFileSync(join(dir, 'file'), 'utf-8'), 'x');
    await expectFailure(['convert', '--to', 'saelens', join(dir, 'run'), join(dir, 'file', 'sub')], 2, /file exists and is not a folder/);
    await expectFailure(['convert', '--to', 'saelens', join(dir, 'missing'), join(dir, 'x')], 2, /missing is not a folder/);
    await expectFailure(['convert', '--to', 'saelens', join(dir, 'file'), join(dir, 'x')], 2, /file is not a folder/);
    await expectFailure(['convert', '--to', 'saelens', join(dir, 'emptydir'), join(dir, 'x')], 1, /emptydir holds no coder folder \(cfg\.json\)/);
    await expectFailure(['convert', '--to'], 2, /--to needs a value/);
    await expectFailure(['convert', '--to', 'saelens', '--bogus', join(dir, 'run'), join(dir, 'x')], 2, /unknown flag --bogus/);
    await expectFailure(['convert', '--to', 'saelens', '--hook_name', 'blocks.0.hook_resid_pre', join(dir, 'run'), join(dir, 'x')], 2, /--hook_name applies to a single coder folder/);
    assertOnly(dir, base, 'after the refusals');

    // A run folder whose second coder is corrupt: the first one's conversion is not left behind.
    truncateSync(join(dir, 'run', 'h.1', 'sae.safetensors'), 40);
    await expectFailure(['convert', '--to', 'saelens', join(dir, 'run'), join(dir, 'x')], 1, /h\.1[/\\]sae\.safetensors: not a valid safetensors file/);
    assertOnly(dir, base, 'after a failed run-folder conversion');

    // SAELens sources with bad cfg.json / weights.
    const bad = (name: string, edit: (d: string) => void) => {
      const d = join(dir, 'sl', name);
      cpSync(join(FIX, 'topk'), d, { recursive: true });
      rmSync(join(d, 'golden.safetensors'));
      edit(d);
      return d;
    };
    const notJson = bad('not-json', (d) => writeFileSync(join(d, 'cfg.json'), '{oops'));
    await expectFailure(['convert', '--to', 'sparsify', notJson, join(dir, 'x')], 2, /not-json[/\\]cfg\.json: invalid JSON/);
    const dIn = bad('d_in', (d) => {
      const c = JSON.parse(readFileSync(join(d, 'cfg.json'), 'utf-8'));
      c.d_in = 'sixteen';
      writeFileSync(join(d, 'cfg.json'), JSON.stringify(c));
    });
    await expectFailure(['convert', '--to', 'sparsify', dIn, join(dir, 'x')], 2, /cfg\.json: d_in must be a positive integer, got "sixteen"/);
    const cut = bad('cut', (d) => truncateSync(join(d, 'sae_weights.safetensors'), Math.floor(statSync(join(d, 'sae_weights.safetensors')).size / 2)));
    await expectFailure(['convert', '--to', 'sparsify', cut, join(dir, 'x')], 1, /cut[/\\]sae_weights\.safetensors: not a valid safetensors file/);
    const noW = bad('no-weights', (d) => rmSync(join(d, 'sae_weights.safetensors')));
    await expectFailure(['convert', '--to', 'sparsify', noW, join(dir, 'x')], 1, /no sae_weights\.safetensors/);
    assertOnly(dir, [...base, 'sl'], 'after the failed SAELens conversions');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pretokenize: bad --ctx_len, missing or empty datasets, an existing or impossible --out', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-pretok-faults-'));
  try {
    writeFileSync(join(dir, 'empty.jsonl'), '');
    writeFileSync(join(dir, 'short.jsonl'), '{"text": "hi"}\n');
    writeFileSync(join(dir, 'file'), 'x');
    mkdirSync(join(dir, 'exists'));
    const base = ['empty.jsonl', 'short.jsonl', 'file', 'exists'];
    const out = join(dir, 'out');
    for (const v of ['0', '-3', '2.5', 'abc', '1e30', '', '9007199254740993'])
      await expectFailure(['pretokenize', CORPUS, '--out', out, '--ctx_len', v], 2, v === '' ? /--ctx_len needs a value/ : /--ctx_len must be an integer >= 1/);
    await expectFailure(['pretokenize', CORPUS, '--out', out, '--ctx_len', '16', '--max_examples', '0'], 2, /--max_examples must be an integer >= 1, got "0"/);
    await expectFailure(['pretokenize', CORPUS, '--ctx_len', '16'], 2, /--out DIR is required/);
    await expectFailure(['pretokenize', '--out', out], 2, /expected exactly one DATASET/);
    await expectFailure(['pretokenize', CORPUS, CORPUS, '--out', out], 2, /expected exactly one DATASET/);
    await expectFailure(['pretokenize', CORPUS, '--out', out, '--context', '16'], 2, /unknown flag --context/);
    await expectFailure(['pretokenize', CORPUS, '--out', join(dir, 'exists'), '--ctx_len', '16'], 2, /exists already exists \(it is never replaced\)/);
    await expectFailure(['pretokenize', CORPUS, '--out', join(dir, 'file'), '--ctx_len', '16'], 2, /file already exists/);
    await expectFailure(['pretokenize', CORPUS, '--out', join(dir, 'file', 'sub'), '--ctx_len', '16'], 2, /file exists and is not a folder/);
    await expectFailure(['pretokenize', join(dir, 'missing.jsonl'), '--out', out, '--ctx_len', '16'], 1, /missing\.jsonl does not exist/);
    await expectFailure(['pretokenize', join(dir, 'empty.jsonl'), '--out', out, '--ctx_len', '16'], 1, /empty\.jsonl is empty/);
    await expectFailure(['pretokenize', join(dir, 'short.jsonl'), '--out', out, '--ctx_len', '16'], 1, /too few for one row of 16 tokens/);
    await expectFailure(['pretokenize', CORPUS, '--out', out, '--ctx_len', '16', '--tokenizer', join(dir, 'no-tokenizer')], 1, /no-tokenizer/);
    assertOnly(dir, base, 'no --out folder or temporary folder after the failures');
    // A ctx_len past the tokenizer's model_max_length is cut to it, as train's chunking does, and recorded.
    const r = await run(['pretokenize', CORPUS, '--out', out, '--ctx_len', '100000000', '--max_examples', '8']);
    assert.equal(r.code, 0, r.err);
    const meta = JSON.parse(readFileSync(join(out, 'sae_lens.json'), 'utf-8'));
    assert.match(r.out, new RegExp(`rows of ${meta.context_size} tokens`));
    assert.ok(meta.context_size > 0 && meta.context_size < 100000000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TransformerLens names: unknown and refused aliases in train and hookpoints are usage errors naming the hook', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-tl-faults-'));
  try {
    const train = (hook: string) => ['train', DEFAULT_ASSETS_DIR, CORPUS, '--hookpoints', hook, '--max_examples', '4', '--save_dir', dir, '--run_name', 'r'];
    await expectFailure(train('blocks.99.hook_resid_pre'), 2, /unknown hookpoint 'blocks\.99\.hook_resid_pre'/);
    await expectFailure(train('blocks.0.hook_bogus'), 2, /unknown hookpoint 'blocks\.0\.hook_bogus'/);
    await expectFailure(train('blocks.0.attn.hook_q'), 2, /'blocks\.0\.attn\.hook_q' is inside the attention: not captured/);
    await expectFailure(train('blocks.0.ln1.hook_scale'), 2, /'blocks\.0\.ln1\.hook_scale' \(the norm's scale\) is not a module output/);
    await expectFailure(['hookpoints', DEFAULT_ASSETS_DIR, '--names', 'transformer_lens'], 2, /--names must be hf or tl, got "transformer_lens"/);
    assert.ok(!existsSync(join(dir, 'r')), 'no run folder for a refused hookpoint');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SAELens folders in eval / features / info: refused or unknown hook names and a d_in that does not fit are named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spx-sl-eval-faults-'));
  try {
    const folder = (hook: string, from = 'jumprelu') => {
      const d = join(dir, 'r', hook);
      cpSync(join(FIX, from), d, { recursive: true });
      rmSync(join(d, 'golden.safetensors'));
      return d;
    };
    const common = [DEFAULT_ASSETS_DIR, CORPUS, '--max_examples', '2', '--ctx_len', '16'];
    await expectFailure(['eval', folder('blocks.0.attn.hook_q'), ...common], 1, /coder 'blocks\.0\.attn\.hook_q': hookpoint 'blocks\.0\.attn\.hook_q' is inside the attention: not captured/);
    await expectFailure(['eval', folder('blocks.99.hook_resid_post'), ...common], 1, /coder 'blocks\.99\.hook_resid_post': hookpoint 'blocks\.99\.hook_resid_post' is not a module of GPT2LMHeadModel/);
    // The fixtures are 16 wide; the embedded model's residual stream is not.
    await expectFailure(['eval', folder('blocks.0.hook_resid_post'), ...common], 1, /coder 'blocks\.0\.hook_resid_post' has d_in 16, but module 'h\.0' outputs \d+ features/);
    const fout = join(dir, 'features-out');
    const topk = folder('blocks.1.hook_resid_pre', 'topk');
    await expectFailure(['features', topk, ...common, '--out', fout], 1, /coder 'blocks\.1\.hook_resid_pre' has d_in 16, but 'blocks\.1\.hook_resid_pre' outputs \d+ features/);
    assert.ok(!existsSync(fout), 'no features folder after the refusal');
    assertOnly(dir, ['r'], 'no temporary features folder');

    // info lists a broken SAELens folder as INVALID, naming the tensor, and exits 1.
    const nan = join(dir, 'info', 'broken');
    cpSync(join(FIX, 'jumprelu'), nan, { recursive: true });
    const f = join(nan, 'sae_weights.safetensors');
    const { loadSafetensors, saveSafetensors, Tensor } = await import('@sparsify/core');
    const t = loadSafetensors(f);
    const copy = new Map([...t].map(([k, v]) => [k, v.clone()]));
    for (const v of t.values()) v.dispose();
    const th = copy.get('threshold')!.toFloat32Array().slice();
    th[2] = NaN;
    copy.get('threshold')!.dispose();
    copy.set('threshold', Tensor.from(th, [th.length]));
    saveSafetensors(f, copy);
    for (const v of copy.values()) v.dispose();
    cpSync(join(FIX, 'topk'), join(dir, 'info', 'fine'), { recursive: true });
    const r = await run(['info', join(dir, 'info')]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.out, /^fine +saelens topk/m);
    assert.match(r.out, /^broken: INVALID: .*tensor 'threshold' has a non-finite value \(NaN\) at index 2/m);
    assert.doesNotMatch(r.err, /\n\s+at .*:\d+:\d+/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pretokenize API: ctxLen and batchRows are checked before anything is written', async () => {
  const { pretokenize } = await import('@sparsify/train');
  const { ValueError, DatasetError } = await import('@sparsify/core');
  const dir = mkdtempSync(join(tmpdir(), 'spx-pretok-api-'));
  try {
    const out = join(dir, 'out');
    for (const ctxLen of [0, -1, 2.5, NaN, Infinity, undefined, '16'])
      await assert.rejects(pretokenize(CORPUS, out, { ctxLen } as never), (e: Error) => e instanceof ValueError && /pretokenize: ctxLen must be a positive integer/.test(e.message), String(ctxLen));
    await assert.rejects(pretokenize(CORPUS, out, { ctxLen: 16, batchRows: 0 }), (e: Error) => e instanceof ValueError && /batchRows must be a positive integer, got 0/.test(e.message));
    await assert.rejects(pretokenize(join(dir, 'nothing.jsonl'), out, { ctxLen: 16 }), DatasetError);
    assertOnly(dir, [], 'nothing written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
