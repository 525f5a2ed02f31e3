/**
 * Command-line grammar of `sparsify train`, following simple_parsing as sparsify uses it:
 * `--flag value` or `--flag=value`, underscore or dash spelling, booleans as `--flag`,
 * `--flag true|false` or `--noflag`, space-separated lists (`--layers 0 1`), `-k` for `--k`,
 * optional values accept `none`. Anything else is a UsageError (exit code 2).
 */
import { SparsifyError } from '@sparsify/core';
import {
  CODER_FIELDS,
  DEFAULT_RUN_FIELDS,
  DEFAULT_EVAL_TRAIN_FLAGS,
  DEFAULT_TRAIN_CONFIG,
  EVAL_TRAIN_FIELDS,
  RUN_FIELDS,
  SAELENS_TRAIN_FIELDS,
  type EvalTrainFlags,
  TRAIN_FIELDS,
  type FieldSpec,
  type RunConfigInit,
} from '@sparsify/train';
import { DEFAULT_SPARSE_CODER_CONFIG } from '@sparsify/core';
import { existsSync } from 'node:fs';

export class UsageError extends SparsifyError {
  override code = 'ERR_SPARSIFY_USAGE';
}

export interface CliFlag extends FieldSpec {
  group: 'sae' | 'train' | 'run' | 'cli' | 'eval';
  default: unknown;
}

const CLI_ONLY: CliFlag[] = [
  {
    field: 'device',
    key: 'device',
    kind: 'enum',
    choices: ['auto', 'cpu', 'cuda'],
    help: 'where to run the coders (and the model, when its forward supports it); auto = cuda when the CUDA build sees a GPU',
    group: 'cli',
    default: 'auto',
  },
  {
    field: 'computeDtype',
    key: 'compute_dtype',
    kind: 'enum',
    choices: ['bf16', 'f32'],
    help: "the coders' encoder product: f32, or bf16 (CPU, opt-in: bf16 operands, f32 accumulation; the backward stays f32)",
    group: 'cli',
    default: 'f32',
  },
  {
    field: 'overwrite',
    key: 'overwrite',
    kind: 'bool',
    help: 'a fresh run may replace an existing run folder of the same --run_name (otherwise refused)',
    group: 'cli',
    default: false,
  },
];

export const FLAGS: readonly CliFlag[] = [
  ...RUN_FIELDS.filter((f) => f.key !== 'model' && f.key !== 'dataset').map((f) => ({
    ...f,
    group: 'run' as const,
    default: (DEFAULT_RUN_FIELDS as Record<string, unknown>)[f.field],
  })),
  ...TRAIN_FIELDS.map((f) => ({ ...f, group: 'train' as const, default: (DEFAULT_TRAIN_CONFIG as Record<string, unknown>)[f.field] })),
  ...SAELENS_TRAIN_FIELDS.map((f) => ({ ...f, group: 'train' as const, default: (DEFAULT_TRAIN_CONFIG as Record<string, unknown>)[f.field] })),
  ...CODER_FIELDS.map((f) => ({ ...f, group: 'sae' as const, default: (DEFAULT_SPARSE_CODER_CONFIG as Record<string, unknown>)[f.field] })),
  ...EVAL_TRAIN_FIELDS.map((f) => ({ ...f, group: 'eval' as const, default: (DEFAULT_EVAL_TRAIN_FLAGS as Record<string, unknown>)[f.field] })),
  ...CLI_ONLY,
];

const BY_KEY = new Map(FLAGS.map((f) => [f.key, f]));

export interface ParsedTrainArgs {
  model?: string;
  dataset?: string;
  /** Only the flags given on the command line, as RunConfig fields. */
  init: RunConfigInit;
  device: 'auto' | 'cpu' | 'cuda';
  /** --overwrite: a fresh run may replace an existing run folder. */
  overwrite: boolean;
  /** --compute_dtype: the coders' encoder product (not written to config.json). */
  computeDtype: 'f32' | 'bf16';
  /** --eval_every / --eval_examples / --best_metric as given. */
  evaluation: Partial<EvalTrainFlags>;
  /** snake_case keys given explicitly (so callers can tell defaults from choices). */
  given: Set<string>;
  help: boolean;
}

function parseBool(v: string, flag: string): boolean {
  const s = v.toLowerCase();
  if (['true', '1', 'yes', 'y', 'on'].includes(s)) return true;
  if (['false', '0', 'no', 'n', 'off'].includes(s)) return false;
  throw new UsageError(`--${flag}: expected true or false, got ${JSON.stringify(v)}`);
}

function parseInt10(v: string, flag: string): number {
  if (!/^[+-]?\d+$/.test(v.replace(/_/g, ''))) throw new UsageError(`--${flag}: expected an integer, got ${JSON.stringify(v)}`);
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isSafeInteger(n)) throw new UsageError(`--${flag}: ${v} is out of range`);
  return n;
}

function parseFloatStrict(v: string, flag: string): number {
  const s = v.trim().toLowerCase();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(s) && !['inf', '-inf', 'nan'].includes(s))
    throw new UsageError(`--${flag}: expected a number, got ${JSON.stringify(v)}`);
  const n = Number(s);
  if (!Number.isFinite(n)) throw new UsageError(`--${flag}: expected a finite number, got ${JSON.stringify(v)}`);
  return n;
}

const isNone = (v: string) => ['none', 'null'].includes(v.toLowerCase());

function convert(flag: CliFlag, values: string[], name: string): unknown {
  const one = () => {
    if (values.length !== 1) throw new UsageError(`--${name}: expected one value, got ${values.length}${values.length ? ` (${values.join(' ')})` : ''}`);
    return values[0];
  };
  // -k: a number for batchtopk (SAELens's float k); an integer for the other kinds (checked once the activation is known).
  if (flag.key === 'k') {
    const v = one();
    return /^[+-]?[\d_]+$/.test(v) ? parseInt10(v, name) : parseFloatStrict(v, name);
  }
  switch (flag.kind) {
    case 'int':
      return parseInt10(one(), name);
    case 'int?': {
      const v = one();
      return isNone(v) ? null : parseInt10(v, name);
    }
    case 'float':
      return parseFloatStrict(one(), name);
    case 'float?': {
      const v = one();
      return isNone(v) ? null : parseFloatStrict(v, name);
    }
    case 'str':
      return one();
    case 'str?': {
      const v = one();
      return isNone(v) ? null : v;
    }
    case 'bool':
      if (values.length === 0) return true;
      return parseBool(one(), name);
    case 'int[]':
      return values.map((v) => parseInt10(v, name));
    case 'str[]':
      return [...values];
    case 'enum': {
      const v = one();
      if (!flag.choices!.includes(v)) throw new UsageError(`--${name}: expected one of ${flag.choices!.join(', ')}, got ${JSON.stringify(v)}`);
      return v;
    }
  }
}

function closest(name: string): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of BY_KEY.keys()) {
    const d = editDistance(name, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return bestD <= Math.max(2, Math.floor(name.length / 4)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) dp[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) dp[i][j] = Math.min(dp[i - 1][j] + 1, dp[i][j - 1] + 1, dp[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return dp[a.length][b.length];
}

/** A token that starts a new flag (negative numbers are values). */
function isFlagToken(t: string): boolean {
  return t.startsWith('-') && !/^-\d|^-\.\d/.test(t) && t !== '-';
}

function lookup(raw: string): { flag: CliFlag; name: string; negated: boolean } {
  const name = raw.replace(/-/g, '_');
  const direct = BY_KEY.get(name);
  if (direct) return { flag: direct, name, negated: false };
  for (const prefix of ['no_', 'no']) {
    if (name.startsWith(prefix)) {
      const f = BY_KEY.get(name.slice(prefix.length));
      if (f && f.kind === 'bool') return { flag: f, name: f.key, negated: true };
    }
  }
  const hint = closest(name);
  throw new UsageError(`unknown flag --${raw}${hint ? ` (did you mean --${hint}?)` : ''}; see sparsify train --help`);
}

export function parseTrainArgs(argv: readonly string[]): ParsedTrainArgs {
  const positionals: string[] = [];
  /** Positionals that came right after a boolean flag (a mistyped boolean value, probably). */
  const afterBool = new Map<string, string>();
  /** List values that name existing files or folders (misplaced positionals, probably). */
  const listPaths: { flag: string; value: string }[] = [];
  const values = new Map<string, unknown>();
  const given = new Set<string>();
  let kRaw: string | undefined;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i];
    if (tok === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (tok === '-h' || tok === '--help') {
      help = true;
      continue;
    }
    if (!isFlagToken(tok)) {
      positionals.push(tok);
      const prev = argv[i - 1];
      if (prev !== undefined && isFlagToken(prev) && !prev.includes('=')) {
        try {
          const { flag, name } = lookup(prev.replace(/^--?/, ''));
          if (flag.kind === 'bool') afterBool.set(tok, name);
        } catch {
          /* reported when parsed */
        }
      }
      continue;
    }
    let raw: string;
    let inline: string | undefined;
    if (tok.startsWith('--')) {
      raw = tok.slice(2);
    } else if (tok.startsWith('-') && tok.length >= 2) {
      raw = tok.slice(1);
      if (raw !== 'k') throw new UsageError(`unknown flag ${tok}; short flags: -k, -h`);
    } else throw new UsageError(`cannot parse ${JSON.stringify(tok)}`);
    const eq = raw.indexOf('=');
    if (eq >= 0) {
      inline = raw.slice(eq + 1);
      raw = raw.slice(0, eq);
    }
    const { flag, name, negated } = lookup(raw);
    const vals: string[] = [];
    if (inline !== undefined) vals.push(inline);
    else {
      const isList = flag.kind === 'int[]' || flag.kind === 'str[]';
      const isBool = flag.kind === 'bool';
      while (i + 1 < argv.length && !isFlagToken(argv[i + 1]) && argv[i + 1] !== '--') {
        if (isBool && !/^(true|false|1|0|yes|no|y|n|on|off)$/i.test(argv[i + 1])) break;
        // An int list ends at the first non-integer, so positionals may follow it.
        if (flag.kind === 'int[]' && vals.length > 0 && !/^[+-]?[\d_]+$/.test(argv[i + 1])) break;
        vals.push(argv[++i]);
        if (flag.kind === 'str[]' && existsSync(argv[i])) listPaths.push({ flag: name, value: argv[i] });
        if (!isList) break;
      }
    }
    if (negated) {
      if (vals.length) throw new UsageError(`--${raw} takes no value`);
      values.set(flag.key, false);
    } else {
      if (vals.length === 0 && flag.kind !== 'bool' && flag.kind !== 'int[]' && flag.kind !== 'str[]')
        throw new UsageError(`--${name}: missing value`);
      values.set(flag.key, convert(flag, vals, name));
      if (flag.key === 'k') kRaw = vals[0];
    }
    given.add(flag.key);
  }
  // A list flag swallows every following word: existing paths among its values were meant as
  // the model and dataset.
  if (listPaths.length && positionals.length < 2) {
    const p = listPaths[0];
    throw new UsageError(
      `--${p.flag}: ${JSON.stringify(p.value)} is an existing file or folder, probably the model or dataset misplaced after a list flag; ` +
        `put [model] [dataset] before --${p.flag}, or end its list with --`,
    );
  }
  if (positionals.length > 2) {
    // A word after a boolean flag that is not true/false became a positional: say so.
    const mistyped = positionals.find((p) => afterBool.has(p));
    const hint = mistyped === undefined ? '' : `; --${afterBool.get(mistyped)} takes true or false, not ${JSON.stringify(mistyped)}`;
    throw new UsageError(`too many positional arguments: ${positionals.slice(2).map((p) => JSON.stringify(p)).join(' ')} (expected [model] [dataset])${hint}`);
  }

  const init: RunConfigInit = {};
  const sae: Record<string, unknown> = {};
  let device: 'auto' | 'cpu' | 'cuda' = 'auto';
  let overwrite = false;
  let computeDtype: 'f32' | 'bf16' = 'f32';
  const evaluation: Record<string, unknown> = {};
  for (const [key, v] of values) {
    const f = BY_KEY.get(key)!;
    if (f.group === 'sae') sae[f.field] = v;
    else if (f.group === 'eval') evaluation[f.field] = v;
    else if (f.key === 'overwrite') overwrite = v as boolean;
    else if (f.key === 'compute_dtype') computeDtype = v as 'f32' | 'bf16';
    else if (f.group === 'cli') device = v as 'auto' | 'cpu' | 'cuda';
    else (init as Record<string, unknown>)[f.field] = v;
  }
  if (Object.keys(sae).length) init.sae = sae;
  const activation = (sae.activation as string | undefined) ?? DEFAULT_SPARSE_CODER_CONFIG.activation;
  checkKindFlags(given, activation);
  // Not batchtopk: k stays sparsify's integer flag (the same error as any integer flag).
  if (kRaw !== undefined && activation !== 'batchtopk') parseInt10(kRaw, 'k');
  // SAELens's AuxK: batchtopk and Matryoshka (over batchtopk or topk); TopK's own is --auxk_alpha.
  if (given.has('aux_loss_coefficient') && activation !== 'batchtopk' && !(activation === 'topk' && ((sae.matryoshkaPrefixes as number[] | undefined)?.length ?? 0) > 0))
    throw new UsageError(`--aux_loss_coefficient applies to --activation batchtopk and Matryoshka coders (--matryoshka_prefixes) only; TopK's AuxK is --auxk_alpha`);
  if (positionals[0] !== undefined) init.model = positionals[0];
  if (positionals[1] !== undefined) init.dataset = positionals[1];
  return { model: positionals[0], dataset: positionals[1], init, device, overwrite, computeDtype, evaluation, given, help };
}

/** The SAELens-kind flags that only mean something for one activation. */
const KIND_FLAGS: Record<string, readonly string[]> = {
  relu: ['l1_coefficient', 'l1_warm_up_steps', 'lp_norm'],
  jumprelu: ['l0_coefficient', 'l0_warm_up_steps', 'pre_act_loss_coefficient', 'jumprelu_init_threshold', 'jumprelu_bandwidth', 'jumprelu_sparsity_loss_mode', 'jumprelu_tanh_scale'],
  batchtopk: ['topk_threshold_lr'],
};

function checkKindFlags(given: ReadonlySet<string>, activation: string): void {
  for (const [kind, keys] of Object.entries(KIND_FLAGS))
    for (const key of keys)
      if (given.has(key) && activation !== kind) throw new UsageError(`--${key} applies to --activation ${kind} only (this run has --activation ${activation})`);
}

function fmtDefault(f: CliFlag): string {
  const v = f.default;
  if (v === null || v === undefined) return 'None';
  if (Array.isArray(v)) return v.length ? v.join(' ') : '[]';
  if (typeof v === 'string') return v === '' ? '""' : v;
  return String(v);
}

function metavar(f: CliFlag): string {
  switch (f.kind) {
    case 'int':
    case 'int?':
      return 'int';
    case 'float':
    case 'float?':
      return 'float';
    case 'bool':
      return '[bool]';
    case 'int[]':
      return 'int [int ...]';
    case 'str[]':
      return 'str [str ...]';
    case 'enum':
      return `{${f.choices!.join(',')}}`;
    default:
      return 'str';
  }
}

export function trainHelp(): string {
  const lines = [
    'usage: sparsify train [model] [dataset] [--flag value ...]',
    '',
    'Trains TopK sparse autoencoders (or transcoders) on the activations of a causal LM.',
    'With neither model nor dataset, trains on the tiny model and corpus that ship with sparsify.',
    '',
    'positional arguments:',
    `  model     model folder or hub id (default when a dataset is given: ${DEFAULT_RUN_FIELDS.model})`,
    `  dataset   dataset folder/file or hub id (default when a model is given: ${DEFAULT_RUN_FIELDS.dataset})`,
    '',
  ];
  const groups: [CliFlag['group'], string][] = [
    ['sae', 'sparse coder options'],
    ['train', 'training options'],
    ['run', 'data and model options'],
    ['eval', 'evaluation options (coders spliced into the model; see sparsify eval)'],
    ['cli', 'command-line options'],
  ];
  for (const [g, title] of groups) {
    lines.push(`${title}:`);
    for (const f of FLAGS.filter((x) => x.group === g)) {
      const names = f.key === 'k' ? '-k, --k' : `--${f.key}`;
      const head = `  ${names} ${metavar(f)}`;
      lines.push(`${head.padEnd(44)} ${f.help} (default: ${fmtDefault(f)})`);
      if (f.kind === 'bool') lines.push(`${''.padEnd(44)} also --no${f.key}`);
    }
    lines.push('');
  }
  lines.push('Flags accept dashes or underscores (--batch-size = --batch_size) and --flag=value.');
  return lines.join('\n');
}
