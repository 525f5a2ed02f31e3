// End-to-end training throughput (LM forward with hook capture + sparse-coder step + optimizer), next
// to sparsify's Trainer step on the same model shape in the same run: GPT-2-small-shaped random model,
// hookpoint h.6, 24576 latents, k 32, batch 8x256, signum, without AuxK and with AuxK (alpha 1/32,
// latents i % 10 == 0 dead in every step). sparsify's side is bench/ref/sparsify_cpu_train.py; one of
// its steps runs while our Trainer reads each batch, so the two sides alternate step by step.
// "not measured" when no Python with torch, transformers, sparsify and schedulefree. Standalone:
//   node --conditions=sparsify-source --import tsx bench/train.ts [--steps N] [--threads T] [--skip-gpt2] [--smoke]
//   env SPARSIFY_BENCH_PYTHON, SPARSIFY_BENCH_PYTHONPATH (as bench/sae.ts)
// Prints markdown and writes bench/out/train.md and bench/out/train.json.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadModel, numThreads, Rng, saveSafetensors, setNumThreads, Tensor } from '@sparsify/core';
import { median, sectionHeaderLines, smokeMode } from './lib/machine.js';
import { startReference, type PyServer } from './lib/py-server.js';
import { DEFAULT_ASSETS_DIR, InMemoryTokenDataset, Trainer, embeddedDataset, trainConfig, type StepInfo, type TokenDatasetLike, type TrainConfigInit } from '@sparsify/train';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const SMOKE = smokeMode();
const steps = Number(arg('steps', SMOKE ? '1' : '4'));
const threads = Number(arg('threads', process.env.SPARSIFY_BENCH_THREADS ?? '2'));
setNumThreads(threads);

/** A GPT-2-small-shaped model with random weights (124M params) in HF layout, in a temp folder. */
function writeRandomGpt2Small(dir: string): void {
  const D = 768, L = 12, V = 50257, P = 1024;
  const rng = new Rng(1);
  const t = new Map<string, Tensor>();
  const randn = (shape: number[], std: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    // uniform with the given standard deviation
    return Tensor.from(rng.fillUniform(new Float32Array(n), -std * Math.sqrt(3), std * Math.sqrt(3)), shape);
  };
  const ones = (n: number) => Tensor.from(new Float32Array(n).fill(1), [n]);
  const zeros = (n: number) => Tensor.zeros([n]);
  t.set('transformer.wte.weight', randn([V, D], 0.02));
  t.set('transformer.wpe.weight', randn([P, D], 0.01));
  for (let i = 0; i < L; i++) {
    const p = `transformer.h.${i}`;
    t.set(`${p}.ln_1.weight`, ones(D));
    t.set(`${p}.ln_1.bias`, zeros(D));
    t.set(`${p}.attn.c_attn.weight`, randn([D, 3 * D], 0.02));
    t.set(`${p}.attn.c_attn.bias`, zeros(3 * D));
    t.set(`${p}.attn.c_proj.weight`, randn([D, D], 0.02));
    t.set(`${p}.attn.c_proj.bias`, zeros(D));
    t.set(`${p}.ln_2.weight`, ones(D));
    t.set(`${p}.ln_2.bias`, zeros(D));
    t.set(`${p}.mlp.c_fc.weight`, randn([D, 4 * D], 0.02));
    t.set(`${p}.mlp.c_fc.bias`, zeros(4 * D));
    t.set(`${p}.mlp.c_proj.weight`, randn([4 * D, D], 0.02));
    t.set(`${p}.mlp.c_proj.bias`, zeros(D));
  }
  t.set('transformer.ln_f.weight', ones(D));
  t.set('transformer.ln_f.bias', zeros(D));
  saveSafetensors(join(dir, 'model.safetensors'), t);
  for (const x of t.values()) x.dispose();
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_embd: D, n_layer: L, n_head: 12, n_positions: P, n_inner: null,
      vocab_size: V, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, tie_word_embeddings: true, bos_token_id: 50256, eos_token_id: 50256,
    }),
  );
}

interface Row {
  name: string;
  setup: string;
  tokensPerSec: number;
  stepSec: number;
  /** sparsify's tokens/s in this run; undefined: not measured (refNote says why). */
  sparsify?: number;
  sparsifyStepSec?: number;
  oursSeconds: number[];
  sparsifySeconds: number[];
  load: number;
}

/** The reference's request that builds its side of a row (model folder, hookpoint, coder, batch). */
interface RefSetup {
  dir: string;
  hookpoint: number;
  m: number;
  k: number;
  batch: number;
  seq: number;
  auxk: boolean;
}

const side: { ref?: PyServer; note: string } = SMOKE || !args.includes('--skip-gpt2')
  ? await startReference(join(here, 'ref', 'sparsify_cpu_train.py'), ['torch', 'transformers', 'sparsify', 'schedulefree'], { threads }, threads)
  : { note: '' };
const library = side.ref?.library;
const dropRef = (why: string) => {
  side.note = why;
  side.ref?.close();
  side.ref = undefined;
};

/**
 * Wraps the dataset so that each batch read first runs one training step of sparsify's side: the
 * Trainer awaits rows() once per step, so the two sides alternate step by step and see the same load.
 */
class AlternatingDataset implements TokenDatasetLike {
  refSeconds: number[] = [];
  refWall = 0; // wall seconds spent in the reference since the last take()
  constructor(private readonly inner: TokenDatasetLike) {}
  get length() {
    return this.inner.length;
  }
  get ctxLen() {
    return this.inner.ctxLen;
  }
  async rows(indices: readonly number[] | Int32Array): Promise<Int32Array> {
    if (side.ref) {
      const t0 = performance.now();
      try {
        this.refSeconds.push(...((await side.ref.request({ op: 'time', reps: 1 })).seconds as number[]));
      } catch (e) {
        dropRef((e as Error).message);
      }
      await new Promise((r) => setTimeout(r, 250)); // the reference's OpenMP threads stop spinning
      this.refWall += (performance.now() - t0) / 1000;
    }
    return this.inner.rows(indices);
  }
  take(): number {
    const w = this.refWall;
    this.refWall = 0;
    return w;
  }
}

/**
 * Median tokens/s over `steps` optimizer steps after one warm-up step (ours: wall time between
 * steps less the reference's share; sparsify: its own steps, its first one a warm-up too).
 */
async function measure(modelDir: string, inner: TokenDatasetLike, init: TrainConfigInit, refSetup?: RefSetup, deadEvery10 = false) {
  if (refSetup && side.ref) {
    try {
      await side.ref.request({ op: 'setup', ...refSetup });
    } catch (e) {
      dropRef((e as Error).message);
    }
  }
  const useRef = Boolean(refSetup && side.ref);
  const dataset = useRef ? new AlternatingDataset(inner) : inner;
  const model = await loadModel(modelDir);
  const saveDir = mkdtempSync(join(tmpdir(), 'spx-bench-train-'));
  const times: number[] = [];
  let last = 0;
  let tokens = 0;
  const setDead = () => {
    // latents i % 10 == 0 dead before every step, as sparsify's side does
    // (the CPU state sets its counters synchronously inside the call: onStep cannot await)
    const threshold = trainer.cfg.deadFeatureThreshold;
    for (const e of trainer.coders) {
      const counts = new Float64Array(e.coder.numLatents).map((_, i) => (i % 10 === 0 ? threshold + 1 : 0));
      void e.coder.loadDeadLatents(threshold, counts);
    }
  };
  const trainer: Trainer = new Trainer(trainConfig({ ...init, saveDir, logToWandb: false }), dataset, model, {
    save: false,
    onStep: (s: StepInfo) => {
      const refShare = dataset instanceof AlternatingDataset ? dataset.take() : 0;
      if (s.step > 1) times.push(s.elapsedSec - last - refShare);
      tokens = s.tokens / s.step;
      last = s.elapsedSec;
      if (deadEvery10) setDead();
      if (s.step >= steps + 1) trainer.requestStop();
    },
  });
  await trainer.init();
  if (deadEvery10) setDead();
  await trainer.fit();
  rmSync(saveDir, { recursive: true, force: true });
  model.dispose?.();
  const med = median(times);
  const refRuns = dataset instanceof AlternatingDataset ? dataset.refSeconds.slice(1) : [];
  const refMed = useRef && side.ref && refRuns.length >= steps ? median(refRuns) : undefined;
  return { tps: tokens / med, stepSec: med, oursSeconds: times, refStep: refMed, refRuns, refTokens: refSetup ? refSetup.batch * refSetup.seq : 0 };
}

const rows: Row[] = [];

// 1. The embedded default model (2 layers, width 128): its default run's settings, both layers (ours only).
if (!SMOKE) {
  const ds = embeddedDataset({ epochs: 3, shuffleSeed: 42 });
  const r = await measure(DEFAULT_ASSETS_DIR, ds, { batchSize: 8, sae: { expansionFactor: 2, k: 24 }, lrWarmupSteps: 10 });
  rows.push({ name: 'embedded tiny GPT-2 (d 128, 2 layers)', setup: 'h.0 + h.1, 256 latents, k 24, batch 8x256, adam (ours only)', tokensPerSec: r.tps, stepSec: r.stepSec, oursSeconds: r.oursSeconds, sparsifySeconds: [], load: loadavg()[0] });
}

// 2. GPT-2-small-shaped random model, hookpoint h.6 (smoke: the tiny gpt2 fixture model, h.1), signum, without and with AuxK.
if (SMOKE || !args.includes('--skip-gpt2')) {
  const dir = SMOKE ? join(here, '..', 'test', 'fixtures', 'model', 'models', 'gpt2') : mkdtempSync(join(tmpdir(), 'spx-gpt2-small-'));
  if (!SMOKE) writeRandomGpt2Small(dir);
  const T = SMOKE ? 32 : 256;
  const hookpoint = SMOKE ? 1 : 6;
  const latents = SMOKE ? 512 : 24576;
  const k = SMOKE ? 8 : 32;
  const vocab = SMOKE ? 1024 : 50257;
  const width = SMOKE ? 64 : 768;
  const n = 8 * (steps + 2);
  const rng = new Rng(2);
  const ids = Int32Array.from({ length: n * T }, () => Math.floor(rng.uniform() * vocab));
  for (const auxk of [false, true]) {
    const ds = new InMemoryTokenDataset(ids, T);
    const init: TrainConfigInit = { batchSize: 8, hookpoints: [`h.${hookpoint}`], optimizer: 'signum', auxkAlpha: auxk ? 1 / 32 : 0, sae: { numLatents: latents, k } };
    const r = await measure(dir, ds, init, { dir, hookpoint, m: latents, k, batch: 8, seq: T, auxk }, auxk);
    rows.push({
      name: SMOKE ? 'tiny gpt2 fixture (smoke)' : 'GPT-2-small shape, random weights',
      setup: `h.${hookpoint}, d ${width}, ${latents} latents, k ${k}, batch 8x${T}, signum${auxk ? ', AuxK 1/32 with 10% dead' : ''}`,
      tokensPerSec: r.tps, stepSec: r.stepSec, sparsify: r.refStep ? r.refTokens / r.refStep : undefined, sparsifyStepSec: r.refStep,
      oursSeconds: r.oursSeconds, sparsifySeconds: r.refRuns, load: loadavg()[0],
    });
    console.error(`train: ${rows.at(-1)!.setup} done`);
  }
  if (!SMOKE) {
    if (!args.includes('--keep')) rmSync(dir, { recursive: true, force: true });
    else console.error('kept', dir);
  }
}
side.ref?.close();

const fmt = (v: number) => Math.round(v).toLocaleString('en-US');
const lines = [
  `## Training throughput (end to end: LM forward + coder step + optimizer), ${numThreads()} threads`,
  '',
  ...sectionHeaderLines(),
  `Median of ${steps} optimizer steps after one warm-up step, each side. ` +
    (library
      ? `sparsify: its Trainer's step for one hookpoint (${library}; bench/ref/sparsify_cpu_train.py: the base model with a forward hook running the SparseCoder, backward, gradient projection, signum, dead-latent counters) on the same model shape and batch, measured in this run, one step alternated with each of ours. sparsify's trainer runs every block of the model; ours stops after the deepest hookpoint.`
      : `sparsify: not measured in this run (${side.note}); no figures from other machines are used.`),
  ...(library && side.note ? ['', `Reference stopped: ${side.note}.`] : []),
  '',
  '| model | setup | tokens/s | s/step | sparsify tokens/s | s/step | ours / sparsify | load (1 min) |',
  '|---|---|---:|---:|---:|---:|---:|---:|',
  ...rows.map((r) => {
    const other = r.sparsify ? `${fmt(r.sparsify)} | ${r.sparsifyStepSec!.toFixed(3)} | ${(r.tokensPerSec / r.sparsify).toFixed(2)}x` : r.setup.endsWith('(ours only)') ? '- | - | -' : 'not measured | - | -';
    return `| ${r.name} | ${r.setup} | ${fmt(r.tokensPerSec)} | ${r.stepSec.toFixed(3)} | ${other} | ${r.load.toFixed(1)} |`;
  }),
  '',
];
const md = lines.join('\n') + '\n';
process.stdout.write(md);
const out = join(here, 'out');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'train.md'), md);
writeFileSync(join(out, 'train.json'), JSON.stringify({ threads: numThreads(), steps, smoke: SMOKE, sparsify: library ?? null, refNote: side.note, rows }, null, 1) + '\n');
