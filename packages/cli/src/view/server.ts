/**
 * The feature browser's HTTP server (node:http, 127.0.0.1 by default): the page's static files
 * (packages/cli/web, with app.js compiled from web/app.ts by the repository's `tsc -b`), a JSON
 * API over a features output folder, the training curves of a run folder, and the prompt view,
 * which runs the model and coders through the library. Every file path taken from a URL is
 * resolved inside its root folder (symlinks included) or refused; on a loopback address, requests
 * whose Host is not that address are refused (DNS rebinding); the page may load nothing from
 * another origin (Content-Security-Policy).
 */
import * as core from '@sparsify/core';
import * as train from '@sparsify/train';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import { runPrompt, type PromptEngine } from './prompt.js';

export interface ViewServerOptions {
  /** The features output folder (made by `sparsify features`). */
  dir: string;
  /** Run folder whose metrics.jsonl gives the training curves (default: the index's run). */
  runDir?: string | null;
  /** 0 picks a free port. Default 8080. */
  port?: number;
  host?: string;
  device?: core.Device;
}

export interface ViewServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const CLI_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** index.html and style.css (sources), app.js (built by tsc into dist/web). */
const STATIC_ROOTS = [join(CLI_ROOT, 'web'), join(CLI_ROOT, 'dist', 'web')];
const STATIC_FILES = new Set(['index.html', 'style.css', 'app.js']);

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.jsonl': 'application/x-ndjson; charset=utf-8',
  '.png': 'image/png',
};

const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * `rel` (already URL-decoded) resolved inside `root`, or an HttpError: no `..` escape, no absolute
 * paths, no NUL, and the real path (after symlinks) must stay inside the real root.
 */
export function resolveInside(root: string, rel: string): string {
  if (rel.includes('\0')) throw new HttpError(400, 'bad path');
  const parts = rel.split(/[\\/]+/).filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw new HttpError(403, 'path leaves the folder');
  const base = realpathSync(root);
  const full = resolve(base, ...parts);
  if (full !== base && !full.startsWith(base + sep)) throw new HttpError(403, 'path leaves the folder');
  if (!existsSync(full)) throw new HttpError(404, 'no such file');
  const real = realpathSync(full);
  if (real !== base && !real.startsWith(base + sep)) throw new HttpError(403, 'path leaves the folder');
  return real;
}

export async function startViewServer(opts: ViewServerOptions): Promise<ViewServer> {
  const dir = resolve(opts.dir);
  const index = train.readFeaturesIndex(dir);
  const files = new Map(index.hookpoints.map((h) => [h.name, new train.FeatureFile(dir, h.name)]));
  const runDir = opts.runDir === undefined ? index.run : opts.runDir;
  const host = opts.host ?? '127.0.0.1';
  const loopback = host === '127.0.0.1' || host === 'localhost' || host === '::1';
  let engine: Promise<PromptEngine> | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let port = 0;

  const json = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': TYPES['.json'], 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.end(text);
  };
  const sendFile = (res: ServerResponse, path: string) => {
    if (!statSync(path).isFile()) throw new HttpError(404, 'not a file');
    res.writeHead(200, {
      'content-type': TYPES[extname(path)] ?? 'application/octet-stream',
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-store',
    });
    res.end(readFileSync(path));
  };
  const hookpoint = (url: URL) => {
    const name = url.searchParams.get('hookpoint') ?? index.hookpoints[0]?.name;
    const f = name === undefined ? undefined : files.get(name);
    if (!f) throw new HttpError(404, `no hookpoint ${JSON.stringify(name)} in this output`);
    return { name: name!, file: f };
  };
  const readBody = (req: IncomingMessage, limit: number) =>
    new Promise<string>((ok, fail) => {
      let size = 0;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > limit) {
          fail(new HttpError(413, `request body over ${limit} bytes`));
          req.destroy();
        } else chunks.push(c);
      });
      req.on('end', () => ok(Buffer.concat(chunks).toString('utf-8')));
      req.on('error', fail);
    });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    // On loopback, a page from another site that rebinds its name to 127.0.0.1 sends its own Host.
    const allowed = new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]);
    if (loopback && !allowed.has(req.headers.host ?? '')) throw new HttpError(421, 'unexpected Host header');
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`);
    let path: string;
    try {
      path = decodeURIComponent((req.url ?? '/').split('?')[0]);
    } catch {
      throw new HttpError(400, 'malformed URL');
    }
    if (req.method === 'GET' && (path === '/' || path === '/index.html')) return sendFile(res, join(STATIC_ROOTS[0], 'index.html'));
    if (req.method === 'GET' && path.startsWith('/static/')) {
      const name = path.slice('/static/'.length);
      if (!STATIC_FILES.has(name)) throw new HttpError(404, 'no such asset');
      const root = STATIC_ROOTS.find((r) => existsSync(join(r, name)));
      if (!root) throw new HttpError(500, `${name} is not built (run npm run build)`);
      return sendFile(res, resolveInside(root, name));
    }
    if (req.method === 'GET' && path.startsWith('/files/')) return sendFile(res, resolveInside(dir, path.slice('/files/'.length)));
    if (req.method === 'GET' && path === '/api/index') return json(res, 200, { ...index, run: runDir, has_metrics: !!runDir && existsSync(join(runDir, 'metrics.jsonl')) });
    if (req.method === 'GET' && path === '/api/vocab') return sendFile(res, resolveInside(dir, index.vocab));
    if (req.method === 'GET' && path === '/api/latents') {
      const { name, file } = hookpoint(url);
      const s = file.summary;
      return json(res, 200, { hookpoint: name, num_latents: s.num_latents, count: s.count, frac_nonzero: s.frac_nonzero, max_act: s.max_act, mean_act: s.mean_act });
    }
    if (req.method === 'GET' && path === '/api/feature') {
      const { name, file } = hookpoint(url);
      const i = Number(url.searchParams.get('index'));
      if (!Number.isInteger(i) || i < 0 || i >= file.numLatents) throw new HttpError(404, `latent ${url.searchParams.get('index')} is outside [0, ${file.numLatents})`);
      return json(res, 200, { hookpoint: name, feature: file.read(i) });
    }
    if (req.method === 'GET' && path === '/api/metrics') return json(res, 200, { run: runDir, records: readMetrics(runDir) });
    if (req.method === 'POST' && path === '/api/prompt') {
      if (!(req.headers['content-type'] ?? '').startsWith('application/json')) throw new HttpError(415, 'send application/json');
      let body: { text?: unknown; top?: unknown };
      try {
        body = JSON.parse(await readBody(req, 1 << 16));
      } catch (e) {
        if (e instanceof HttpError) throw e;
        throw new HttpError(400, 'body is not JSON');
      }
      if (typeof body.text !== 'string' || body.text.length === 0) throw new HttpError(400, "'text' must be a non-empty string");
      engine ??= loadEngine(index, dir, opts.device ?? 'cpu');
      const eng = await engine.catch((e) => {
        engine = undefined;
        throw new HttpError(503, `cannot load the model or coders: ${(e as Error).message}`);
      });
      // One model run at a time.
      const run = queue.then(() => runPrompt(eng, body.text as string, typeof body.top === 'number' ? body.top : 5));
      queue = run.catch(() => {});
      return json(res, 200, await run);
    }
    throw new HttpError(404, 'not found');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      const status = e instanceof HttpError ? e.status : e instanceof core.SparsifyError ? 400 : 500;
      if (!res.headersSent) json(res, status, { error: (e as Error).message });
      else res.end();
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 8080, host, () => ok());
  });
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    port,
    close: async () => {
      await new Promise<void>((ok) => server.close(() => ok()));
      server.closeAllConnections?.();
      if (engine) (await engine.catch(() => undefined))?.dispose();
    },
  };
}

async function loadEngine(index: train.FeaturesIndex, dir: string, device: core.Device): Promise<PromptEngine> {
  const model = await core.loadModel(index.model_dir, { device });
  const tokenizer = await core.loadTokenizer(index.tokenizer ? dir : index.model_dir);
  const coders: PromptEngine['coders'] = [];
  for (const h of index.hookpoints) coders.push({ name: h.name, hookpoint: h.hookpoint, coder: await core.SparseCoder.loadFromDisk(h.coder_dir, { device }) });
  return {
    model,
    tokenizer,
    coders,
    maxTokens: Math.min(model.maxPositions, 1024),
    dispose: () => {
      for (const c of coders) c.coder.dispose();
      model.dispose();
    },
  };
}

/** The records of a run's metrics.jsonl (unparseable lines skipped: the run may be writing it). */
function readMetrics(runDir: string | null | undefined): Record<string, unknown>[] {
  if (!runDir) return [];
  const path = join(runDir, 'metrics.jsonl');
  if (!existsSync(path)) return [];
  const out: Record<string, unknown>[] = [];
  for (const line of readFileSync(path, 'utf-8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line);
      if (r && typeof r === 'object') out.push(r);
    } catch {
      /* a line being written */
    }
  }
  return out;
}
