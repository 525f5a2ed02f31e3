import { test } from 'node:test';
import assert from 'node:assert/strict';

import { main, parseTrainArgs, trainHelp, UsageError } from '@sparsify/cli';
import { runConfig, TRAIN_FIELDS, CODER_FIELDS, RUN_FIELDS, SAELENS_TRAIN_FIELDS } from '@sparsify/train';
import { DEFAULT_SPARSE_CODER_CONFIG, KIND_CONFIG_KEYS } from '@sparsify/core';

function capture() {
  let out = '';
  let err = '';
  return {
    io: { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } },
    get out() {
      return out;
    },
    get err() {
      return err;
    },
  };
}

test('every TrainConfig, SparseCoderConfig and RunConfig flag parses, in both spellings', () => {
  const argv = [
    'gpt2', 'my/data',
    '--batch_size', '4', '--grad-acc-steps', '2', '--micro_acc_steps=3', '--loss_fn', 'fvu', '--optimizer', 'signum',
    '--lr', '1e-3', '--lr_warmup_steps', '5', '--k_decay_steps', '7', '--auxk_alpha', '0.03125',
    '--dead_feature_threshold', '1_000', '--exclude_tokens', '0', '50256', '--hookpoints', 'h.*.attn', 'h.*.mlp.act',
    '--init_seeds', '0', '1', '--layer_stride', '2', '--distribute_modules', 'false', '--save_every', '9',
    '--save_best', '--finetune', 'some/dir', '--nolog_to_wandb', '--run_name', 'r', '--wandb_log_frequency', '3',
    '--save_dir', '/tmp/x', '--activation', 'groupmax', '--expansion_factor', '4', '--normalize_decoder', 'false',
    '--num_latents', '128', '-k', '8', '--multi_topk', 'true', '--skip_connection', '--transcode',
    '--split', 'validation', '--ctx_len', '64', '--hf_token', 'tok', '--revision', 'main', '--load_in_8bit', 'false',
    '--max_examples', '100', '--resume', '--text_column', 'content', '--shuffle_seed', '7',
    '--data_preprocessing_num_proc', '1', '--data_args', 'name=x,streaming=false', '--device', 'cpu',
  ];
  const p = parseTrainArgs(argv);
  assert.equal(p.model, 'gpt2');
  assert.equal(p.dataset, 'my/data');
  const c = runConfig(p.init);
  assert.equal(c.batchSize, 4);
  assert.equal(c.gradAccSteps, 2);
  assert.equal(c.microAccSteps, 3);
  assert.equal(c.optimizer, 'signum');
  assert.equal(c.lr, 1e-3);
  assert.equal(c.lrWarmupSteps, 5);
  assert.equal(c.kDecaySteps, 7);
  assert.equal(c.auxkAlpha, 0.03125);
  assert.equal(c.deadFeatureThreshold, 1000);
  assert.deepEqual(c.excludeTokens, [0, 50256]);
  assert.deepEqual(c.hookpoints, ['h.*.attn', 'h.*.mlp.act']);
  assert.deepEqual(c.initSeeds, [0, 1]);
  assert.equal(c.layerStride, 2);
  assert.equal(c.distributeModules, false);
  assert.equal(c.saveEvery, 9);
  assert.equal(c.saveBest, true);
  assert.equal(c.finetune, 'some/dir');
  assert.equal(c.logToWandb, false);
  assert.equal(c.runName, 'r');
  assert.equal(c.wandbLogFrequency, 3);
  assert.equal(c.saveDir, '/tmp/x');
  assert.deepEqual(c.sae, { ...DEFAULT_SPARSE_CODER_CONFIG, activation: 'groupmax', expansionFactor: 4, normalizeDecoder: false, numLatents: 128, k: 8, multiTopk: true, skipConnection: true, transcode: true });
  assert.equal(c.split, 'validation');
  assert.equal(c.ctxLen, 64);
  assert.equal(c.hfToken, 'tok');
  assert.equal(c.revision, 'main');
  assert.equal(c.loadIn8bit, false);
  assert.equal(c.maxExamples, 100);
  assert.equal(c.resume, true);
  assert.equal(c.textColumn, 'content');
  assert.equal(c.shuffleSeed, 7);
  assert.equal(c.dataPreprocessingNumProc, 1);
  assert.equal(c.dataArgs, 'name=x,streaming=false');
  assert.equal(p.device, 'cpu');
  // Every config field has a flag that was exercised above.
  const keys = new Set(argv.filter((a) => a.startsWith('-')).map((a) => a.replace(/^--?/, '').split('=')[0].replace(/-/g, '_').replace(/^no(?=log_to_wandb)/, '')));
  keys.add('layers'); // exclusive with --hookpoints, checked just below
  // The SAELens-kind flags apply to one activation each: exercised in the next test (lp_norm: in the -k / --lp_norm one).
  const kindKeys = new Set([...KIND_CONFIG_KEYS.map(([, k]) => k), 'lp_norm']);
  for (const f of [...TRAIN_FIELDS, ...CODER_FIELDS, ...RUN_FIELDS])
    if (f.key !== 'model' && f.key !== 'dataset' && !kindKeys.has(f.key)) assert.ok(keys.has(f.key), `flag --${f.key} not exercised`);
  assert.deepEqual(runConfig(parseTrainArgs(['--layers', '16', '24', 'model']).init).layers, [16, 24]);
});

test('the SAELens-kind flags parse, in both spellings, each with its activation', () => {
  const j = runConfig(parseTrainArgs(['--activation', 'jumprelu', '--l0-coefficient', '0.5', '--l0_warm_up_steps=7', '--jumprelu_init_threshold', '0.1',
    '--jumprelu-bandwidth', '0.2', '--jumprelu_sparsity_loss_mode', 'tanh', '--jumprelu_tanh_scale', '3']).init);
  assert.deepEqual([j.l0Coefficient, j.l0WarmUpSteps], [0.5, 7]);
  assert.deepEqual([j.sae.activation, j.sae.jumpreluInitThreshold, j.sae.jumpreluBandwidth, j.sae.jumpreluSparsityLossMode, j.sae.jumpreluTanhScale], ['jumprelu', 0.1, 0.2, 'tanh', 3]);
  const r = runConfig(parseTrainArgs(['--activation', 'relu', '--l1_coefficient', '5', '--l1-warm-up-steps', '100', '--normalize-activations', 'expected_average_only_in', '--noapply_b_dec_to_input',
    '--max_grad_norm', '0.5', '--n_batches_for_norm_estimate', '20']).init);
  assert.deepEqual([r.sae.activation, r.l1Coefficient, r.l1WarmUpSteps, r.normalizeActivations, r.sae.applyBDecToInput], ['relu', 5, 100, 'expected_average_only_in', false]);
  assert.deepEqual([r.maxGradNorm, r.nBatchesForNormEstimate], [0.5, 20]);
  assert.equal(runConfig(parseTrainArgs([]).init).maxGradNorm, null, 'max_grad_norm: the kind decides (defaultMaxGradNorm)');
  const b = runConfig(parseTrainArgs(['--activation', 'batchtopk', '--topk_threshold_lr', '0.05', '--matryoshka-prefixes', '128', '512', '--num_latents', '1024']).init);
  assert.deepEqual([b.sae.activation, b.sae.topkThresholdLr, b.sae.matryoshkaPrefixes], ['batchtopk', 0.05, [128, 512]]);
  // The dead-latent terms (SAELens's names) and their defaults: AuxK 1, the pre-act loss off, no window.
  assert.deepEqual([b.auxLossCoefficient, j.preActLossCoefficient, b.deadFeatureWindow], [1, null, null]);
  const a = runConfig(parseTrainArgs(['--activation', 'batchtopk', '--aux-loss-coefficient', '0.5', '--dead_feature_window', '1000']).init);
  assert.deepEqual([a.auxLossCoefficient, a.deadFeatureWindow], [0.5, 1000]);
  const p = runConfig(parseTrainArgs(['--activation', 'jumprelu', '--pre_act_loss_coefficient', '3e-6']).init);
  assert.equal(p.preActLossCoefficient, 3e-6);
  assert.throws(() => parseTrainArgs(['--activation', 'relu', '--pre_act_loss_coefficient', '3e-6']), /--pre_act_loss_coefficient applies to --activation jumprelu/);
  assert.throws(() => parseTrainArgs(['--aux_loss_coefficient', '0.5']), /--aux_loss_coefficient applies to --activation batchtopk and Matryoshka/);
  assert.equal(runConfig(parseTrainArgs(['--matryoshka_prefixes', '32', '--aux_loss_coefficient', '0.5']).init).auxLossCoefficient, 0.5);
  const exercised = new Set(['l0_coefficient', 'l0_warm_up_steps', 'jumprelu_init_threshold', 'jumprelu_bandwidth', 'jumprelu_sparsity_loss_mode', 'jumprelu_tanh_scale',
    'l1_coefficient', 'l1_warm_up_steps', 'normalize_activations', 'apply_b_dec_to_input', 'topk_threshold_lr', 'matryoshka_prefixes',
    'max_grad_norm', 'n_batches_for_norm_estimate', 'aux_loss_coefficient', 'pre_act_loss_coefficient', 'dead_feature_window']);
  for (const [, key] of KIND_CONFIG_KEYS) assert.ok(exercised.has(key), `flag --${key} not exercised`);
  for (const f of SAELENS_TRAIN_FIELDS) assert.ok(exercised.has(f.key), `flag --${f.key} not exercised`);
});

test('--compute_dtype: f32 by default, bf16 when given, not part of the RunConfig; other values are usage errors', () => {
  assert.equal(parseTrainArgs([]).computeDtype, 'f32');
  const p = parseTrainArgs(['--compute_dtype', 'bf16', 'gpt2']);
  assert.equal(p.computeDtype, 'bf16');
  assert.equal(p.model, 'gpt2');
  assert.ok(!('computeDtype' in p.init));
  assert.equal(parseTrainArgs(['--compute-dtype=f32']).computeDtype, 'f32');
  assert.throws(() => parseTrainArgs(['--compute_dtype', 'fp16']), (e: Error) => e instanceof UsageError && /compute_dtype/.test(e.message));
});

test('booleans: --flag, --flag true/false, --noflag, --no-flag, --flag=0', () => {
  assert.equal(parseTrainArgs(['--transcode']).init.sae!.transcode, true);
  assert.equal(parseTrainArgs(['--transcode', 'False']).init.sae!.transcode, false);
  assert.equal(parseTrainArgs(['--notranscode']).init.sae!.transcode, false);
  assert.equal(parseTrainArgs(['--no-normalize-decoder']).init.sae!.normalizeDecoder, false);
  assert.equal(parseTrainArgs(['--save_best=0']).init.saveBest, false);
  // A bool flag does not swallow a following positional.
  const p = parseTrainArgs(['--transcode', 'gpt2', 'data']);
  assert.equal(p.model, 'gpt2');
  assert.equal(p.dataset, 'data');
});

test('optional values accept none; lists can be empty; negative numbers are values', () => {
  const p = parseTrainArgs(['--lr', 'None', '--run_name', 'null', '--layers', '--hookpoints']);
  assert.equal(p.init.lr, null);
  assert.equal(p.init.runName, null);
  assert.deepEqual(p.init.layers, []);
  assert.deepEqual(p.init.hookpoints, []);
  assert.throws(() => runConfig(parseTrainArgs(['--batch_size', '-3']).init), /batch_size/);
});

test('bad flags and values are usage errors naming the flag', () => {
  const bad: [string[], RegExp][] = [
    [['--batchsize', '3'], /unknown flag --batchsize \(did you mean --batch_size\?\)/],
    [['--bogus'], /unknown flag --bogus/],
    [['-x'], /unknown flag -x/],
    [['--batch_size', 'three'], /--batch_size: expected an integer/],
    [['--batch_size'], /--batch_size: missing value/],
    [['--lr', 'fast'], /--lr: expected a number/],
    [['--optimizer', 'sgd'], /--optimizer: expected one of adam, muon, signum/],
    [['--transcode=maybe'], /--transcode: expected true or false/],
    [['--layers', 'x'], /--layers: expected an integer/],
    [['a', 'b', 'c'], /too many positional arguments/],
    [['--nobatch_size'], /unknown flag/],
  ];
  for (const [argv, re] of bad) assert.throws(() => parseTrainArgs(argv), (e: Error) => e instanceof UsageError && re.test(e.message), argv.join(' '));
});

test('main: usage errors exit 2 with a message; --help lists every flag with its default', async () => {
  let c = capture();
  assert.equal(await main(['train', '--bogus'], c.io), 2);
  assert.match(c.err, /unknown flag --bogus/);
  c = capture();
  assert.equal(await main(['train', '--layers', '1', '--layer_stride', '2'], c.io), 2);
  assert.match(c.err, /layer_stride/);
  c = capture();
  assert.equal(await main(['frobnicate'], c.io), 2);
  assert.match(c.err, /unknown command/);
  c = capture();
  assert.equal(await main(['train', '--help'], c.io), 0);
  const help = c.out;
  for (const f of [...TRAIN_FIELDS, ...CODER_FIELDS, ...RUN_FIELDS]) {
    if (f.key === 'model' || f.key === 'dataset') continue;
    assert.match(help, new RegExp(`--${f.key} `), `--help lists --${f.key}`);
  }
  assert.match(help, /-k, --k int .*\(default: 32\)/);
  assert.match(help, /--optimizer \{adam,muon,signum\} .*\(default: adam\)/);
  assert.match(help, /--batch_size int .*\(default: 32\)/);
  assert.match(help, /--dead_feature_threshold int .*\(default: 10000000\)/);
  assert.match(help, /--device \{auto,cpu,cuda\} .*\(default: auto\)/);
  assert.match(help, /--compute_dtype \{bf16,f32\} .*\(default: f32\)/);
  assert.equal(trainHelp(), help.trimEnd());
});

test('main: bad paths give a clear error and exit 1', async () => {
  const c = capture();
  assert.equal(await main(['info', '/nonexistent/folder'], c.io), 1);
  assert.match(c.err, /\/nonexistent\/folder: no such folder/);
  const d = capture();
  assert.equal(await main(['info'], d.io), 2);
});

test('-k takes a float for batchtopk only; --lp_norm for relu', () => {
  for (const argv of [['--activation', 'batchtopk', '-k', '16.5'], ['--k=16.5', '--activation=batchtopk'], ['--k', '.5', '--activation', 'batchtopk']])
    assert.equal(runConfig(parseTrainArgs(argv).init).sae.k, Number(argv.find((a) => /\d/.test(a))!.replace(/^--k=/, '')), argv.join(' '));
  assert.equal(runConfig(parseTrainArgs(['--activation', 'batchtopk', '-k', '16']).init).sae.k, 16);
  // Every other kind keeps sparsify's integer flag and its error.
  for (const argv of [['-k', '16.5'], ['--activation', 'topk', '-k', '1e3'], ['-k', '8.0', '--activation', 'groupmax']])
    assert.throws(() => parseTrainArgs(argv), (e: Error) => e instanceof UsageError && e.message === `--k: expected an integer, got ${JSON.stringify(argv[argv.indexOf('-k') + 1])}`, argv.join(' '));
  assert.throws(() => parseTrainArgs(['--activation', 'batchtopk', '-k', 'nan']), (e: Error) => e instanceof UsageError && /--k: expected a finite number/.test(e.message));
  const r = runConfig(parseTrainArgs(['--activation', 'relu', '--lp_norm', '1.5']).init);
  assert.equal(r.sae.lpNorm, 1.5);
  assert.throws(() => parseTrainArgs(['--lp-norm', '2']), (e: Error) => e instanceof UsageError && /--lp_norm applies to --activation relu only/.test(e.message));
});
