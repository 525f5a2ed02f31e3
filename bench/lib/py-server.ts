/**
 * A Python reference script run as a line server (bench/ref/*.py): one JSON request per line on
 * stdin, one JSON reply per line on stdout, the first line announcing {library, ready} or {error}.
 * Lets a bench alternate single runs of ours and of the reference so both see the same load.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';

/** $SPARSIFY_BENCH_PYTHON ('none': no reference), else python3 when it can import every module in `modules`. */
export function findPython(modules: string[], env: NodeJS.ProcessEnv = process.env): { python?: string; why: string } {
  const forced = process.env.SPARSIFY_BENCH_PYTHON;
  if (forced === 'none') return { why: 'no Python reference requested (SPARSIFY_BENCH_PYTHON=none)' };
  if (forced) return { python: forced, why: `SPARSIFY_BENCH_PYTHON=${forced}` };
  const r = spawnSync('python3', ['-c', modules.map((m) => `import ${m}`).join('; ')], { stdio: 'ignore', env });
  if (r.status === 0) return { python: 'python3', why: `python3 has ${modules.join(', ')}` };
  return { why: `no python3 with ${modules.join(', ')} (set SPARSIFY_BENCH_PYTHON)` };
}

export class PyServer {
  library = '';
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  private stderr = '';

  constructor(python: string, script: string, config: unknown, env: NodeJS.ProcessEnv) {
    this.child = spawn(python, [script, JSON.stringify(config)], { env });
    this.child.on('error', (e) => (this.stderr += `${e.message}\n`));
    this.child.stdin.on('error', (e) => (this.stderr += `${e.message}\n`)); // a reference that exited: reported by reply()
    this.child.stderr.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-2000)));
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  private async reply(): Promise<Record<string, unknown>> {
    let r = await this.lines.next();
    // Libraries may print notices on stdout at import; replies are the JSON object lines.
    while (!r.done && !r.value.startsWith('{')) r = await this.lines.next();
    if (r.done) throw new Error(`reference exited: ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    const msg = JSON.parse(r.value) as Record<string, unknown>;
    if (typeof msg.error === 'string') throw new Error(msg.error);
    return msg;
  }

  /** Waits for the ready line; throws with the script's reason when it cannot run. */
  async start(): Promise<void> {
    this.library = String((await this.reply()).library);
  }

  async request(req: unknown): Promise<Record<string, unknown>> {
    this.child.stdin.write(JSON.stringify(req) + '\n');
    return this.reply();
  }

  close(): void {
    this.child.stdin.end();
  }
}

/** The environment of a reference process: its thread count and $SPARSIFY_BENCH_PYTHONPATH first on PYTHONPATH. */
export function referenceEnv(threads: number): NodeJS.ProcessEnv {
  return {
    ...process.env,
    OMP_NUM_THREADS: String(threads),
    MKL_NUM_THREADS: String(threads),
    PYTHONPATH: [process.env.SPARSIFY_BENCH_PYTHONPATH, process.env.PYTHONPATH].filter(Boolean).join(':'),
  };
}

/**
 * Starts bench/ref/<script> when a Python importing `modules` is found; otherwise (or when it fails
 * to start) `ref` is undefined and `note` says why, for the section's "not measured".
 */
export async function startReference(script: string, modules: string[], config: unknown, threads: number): Promise<{ ref?: PyServer; note: string }> {
  const env = referenceEnv(threads);
  const { python, why } = findPython(modules, env);
  if (!python) return { note: why };
  const ref = new PyServer(python, script, config, env);
  try {
    await ref.start();
    return { ref, note: '' };
  } catch (e) {
    ref.close();
    return { note: `${python}: ${(e as Error).message}` };
  }
}
