/**
 * A small flag parser for the commands that take a handful of flags (features, view):
 * `--flag value` / `--flag=value`, dash or underscore spelling, booleans as `--flag`,
 * `--flag true|false` or `--noflag`. Anything else is a UsageError naming the flag.
 */
import { UsageError } from '../flags.js';

export type FlagKind = 'int' | 'string' | 'bool' | 'enum';

export interface FlagSpec {
  kind: FlagKind;
  help: string;
  choices?: readonly string[];
  /** Smallest and largest accepted values of an int flag (default 1, none). */
  min?: number;
  max?: number;
}

export interface ParsedArgs {
  positional: string[];
  values: Map<string, string | number | boolean>;
  help: boolean;
}

export function parseFlags(argv: readonly string[], specs: Record<string, FlagSpec>, command: string): ParsedArgs {
  const positional: string[] = [];
  const values = new Map<string, string | number | boolean>();
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      help = true;
      continue;
    }
    if (!a.startsWith('--')) {
      if (a.startsWith('-') && a.length > 1) throw new UsageError(`${command}: unknown flag ${a}`);
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    let key = (eq >= 0 ? a.slice(2, eq) : a.slice(2)).replace(/-/g, '_');
    let inline = eq >= 0 ? a.slice(eq + 1) : undefined;
    let spec = specs[key];
    if (!spec && key.startsWith('no') && specs[key.slice(2)]?.kind === 'bool' && inline === undefined) {
      key = key.slice(2);
      spec = specs[key];
      inline = 'false';
    }
    if (!spec) throw new UsageError(`${command}: unknown flag --${key} (see sparsify ${command} --help)`);
    if (spec.kind === 'bool') {
      let v = inline;
      if (v === undefined && (argv[i + 1] === 'true' || argv[i + 1] === 'false')) v = argv[++i];
      values.set(key, v === undefined ? true : v === 'true');
      if (v !== undefined && v !== 'true' && v !== 'false') throw new UsageError(`--${key}: expected true or false, got ${JSON.stringify(v)}`);
      continue;
    }
    const v = inline ?? argv[++i];
    if (v === undefined) throw new UsageError(`--${key}: needs a value`);
    if (spec.kind === 'int') {
      const n = Number(v);
      const min = spec.min ?? 1;
      if (!/^-?\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${key}: expected an integer >= ${min}, got ${JSON.stringify(v)}`);
      if (spec.max !== undefined && n > spec.max) throw new UsageError(`--${key}: at most ${spec.max}, got ${n}`);
      values.set(key, n);
    } else if (spec.kind === 'enum') {
      if (!spec.choices!.includes(v)) throw new UsageError(`--${key}: expected one of ${spec.choices!.join(', ')}, got ${JSON.stringify(v)}`);
      values.set(key, v);
    } else values.set(key, v);
  }
  return { positional, values, help };
}

export function flagsHelp(specs: Record<string, FlagSpec>, defaults: Record<string, unknown>): string {
  const rows = Object.entries(specs).map(([k, s]) => {
    const d = defaults[k];
    return `  --${k}${s.kind === 'bool' ? '' : ` ${s.kind === 'enum' ? s.choices!.join('|') : s.kind.toUpperCase()}`}`.padEnd(34) + `${s.help}${d === undefined ? '' : ` (default: ${d})`}`;
  });
  return rows.join('\n');
}
