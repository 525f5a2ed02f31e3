/**
 * `sparsify view [DIR] [--port 8080] [--host 127.0.0.1] [--run RUN_DIR]`: serves the feature
 * browser until interrupted. DIR defaults to the newest `features/<name>` output in the current
 * folder (what `sparsify features <run>` writes by default).
 */
import { FEATURES_INDEX } from '@sparsify/train';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import type { CliIO } from '../cli.js';
import { resolveDevice, type DeviceFlag } from '../device.js';
import { UsageError } from '../flags.js';
import { startViewServer } from '../view/server.js';
import { flagsHelp, parseFlags, type FlagSpec } from './args.js';

const SPECS: Record<string, FlagSpec> = {
  port: { kind: 'int', min: 0, help: 'port (0: any free port)' },
  host: { kind: 'string', help: 'address to bind (anything but loopback exposes the page to the network)' },
  run: { kind: 'string', help: 'run folder whose metrics.jsonl gives the training curves' },
  device: { kind: 'enum', choices: ['auto', 'cpu', 'cuda'], help: 'where the prompt view runs the model and coders' },
};

export const VIEW_USAGE = `usage: sparsify view [features dir] [--flags]

  [features dir]  made by 'sparsify features' (default: the newest features/*)

${flagsHelp(SPECS, { port: 8080, host: '127.0.0.1', run: 'the run recorded in the features output', device: 'auto' })}
`;

/** The newest features output under ./features (by the time its index was written). */
export function defaultFeaturesDir(cwd = process.cwd()): string | undefined {
  const root = join(cwd, 'features');
  if (!existsSync(root)) return undefined;
  let best: { dir: string; t: number } | undefined;
  for (const name of readdirSync(root)) {
    const idx = join(root, name, FEATURES_INDEX);
    if (name.startsWith('.') || !existsSync(idx)) continue;
    const t = statSync(idx).mtimeMs;
    if (!best || t > best.t) best = { dir: join('features', name), t };
  }
  return best?.dir;
}

export async function viewCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const args = parseFlags(argv, SPECS, 'view');
  if (args.help) {
    io.stdout.write(VIEW_USAGE);
    return 0;
  }
  if (args.positional.length > 1) throw new UsageError(`view: expected one features folder, got ${args.positional.length}`);
  const dir = args.positional[0] ?? defaultFeaturesDir();
  if (!dir) throw new UsageError("view: no features folder given and none under ./features (make one with 'sparsify features <run folder>')");
  const device = resolveDevice((args.values.get('device') as DeviceFlag | undefined) ?? 'auto', (s) => io.stderr.write(s));
  const server = await startViewServer({
    dir,
    runDir: (args.values.get('run') as string | undefined) ?? undefined,
    port: (args.values.get('port') as number | undefined) ?? 8080,
    host: (args.values.get('host') as string | undefined) ?? '127.0.0.1',
    device,
  }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'EADDRINUSE') throw new UsageError(`view: port ${args.values.get('port') ?? 8080} is in use (choose another with --port)`);
    if (e.code === 'EADDRNOTAVAIL') throw new UsageError(`view: cannot bind --host ${args.values.get('host')}`);
    throw e;
  });
  io.stdout.write(`sparsify: serving ${dir} on ${server.url} (Ctrl-C to stop)\n`);
  await new Promise<void>((ok) => {
    const off = io.onInterrupt?.(() => {
      off?.();
      ok();
    });
    if (!off) ok();
  });
  await server.close();
  return 0;
}
