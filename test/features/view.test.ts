// `sparsify view`: the server's API and path handling, then the page in a real headless browser
// (Debian's chromium driven by playwright-core; .ci/run installs chromium): it loads, lists
// latents, opens a feature, runs the prompt view, shows the training curves, saves a screenshot
// as a test artifact, and makes no request beyond the local server.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { main } from '@sparsify/cli';

import { startViewServer, type ViewServer } from '../../packages/cli/src/view/server.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = process.env.SPARSIFY_TEST_ARTIFACTS ?? join(ROOT, 'test-artifacts');
const EVIL = '<img src=x onerror="window.__pwned=1">';

const tmp = mkdtempSync(join(tmpdir(), 'features-view-'));
let server: ViewServer;
let out: string;

function capture() {
  const o = { out: '', err: '' };
  return { o, io: { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s) } } };
}

/** A raw request: the path is sent exactly as given (no URL normalisation by a client). */
function raw(path: string, opts: { method?: string; host?: string; body?: string; type?: string } = {}): Promise<{ status: number; body: string }> {
  return new Promise((ok, fail) => {
    const req = request(
      { host: '127.0.0.1', port: server.port, path, method: opts.method ?? 'GET', headers: { host: opts.host ?? `127.0.0.1:${server.port}`, ...(opts.type ? { 'content-type': opts.type } : {}) } },
      (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => ok({ status: res.statusCode!, body }));
      },
    );
    req.on('error', fail);
    req.end(opts.body);
  });
}

before(async () => {
  // The page's script is compiled by the repository's build (tsc -b); make sure it is current.
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', join(ROOT, 'packages', 'cli', 'web')], { encoding: 'utf-8' });
  assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
  const c = capture();
  // With evaluations during training, so metrics.jsonl also holds eval/<coder>/<field> records.
  assert.equal(await main(['train', '--max_examples', '16', '--save_dir', join(tmp, 'checkpoints'), '--run_name', 'default', '--eval_every', '1', '--eval_examples', '4'], c.io), 0, c.o.err);
  out = join(tmp, 'features', 'default');
  assert.equal(await main(['features', join(tmp, 'checkpoints', 'default'), '--max_examples', '8', '--out', out], c.io), 0, c.o.err);
  // A hostile token string: the page must show it as text.
  const vocab = JSON.parse(readFileSync(join(out, 'vocab.json'), 'utf-8')) as string[];
  const first = JSON.parse(readFileSync(join(out, 'h.0', 'features.jsonl'), 'utf-8').split('\n')[0]);
  const ex = first.top[0];
  vocab[ex.tokens[ex.pos - ex.start]] = EVIL;
  writeFileSync(join(out, 'vocab.json'), JSON.stringify(vocab));
  writeFileSync(join(tmp, 'secret.txt'), 'outside');
  symlinkSync(join(tmp, 'secret.txt'), join(out, 'link.txt'));
  server = await startViewServer({ dir: out, port: 0 });
});

after(async () => {
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('view server', () => {
  test('serves the index, latents, features, metrics and the prompt view', async () => {
    const index = JSON.parse((await raw('/api/index')).body);
    assert.deepEqual(index.hookpoints.map((h: { name: string }) => h.name), ['h.0', 'h.1']);
    assert.equal(index.has_metrics, true);
    const lat = JSON.parse((await raw('/api/latents?hookpoint=h.1')).body);
    assert.equal(lat.num_latents, 256);
    assert.equal(lat.count.length, 256);
    const f = JSON.parse((await raw('/api/feature?hookpoint=h.0&index=5')).body);
    assert.equal(f.feature.index, 5);
    assert.equal((await raw('/api/feature?hookpoint=h.0&index=256')).status, 404);
    assert.equal((await raw('/api/feature?hookpoint=nope&index=1')).status, 404);
    const m = JSON.parse((await raw('/api/metrics')).body);
    assert.ok(m.records.length > 0 && 'fvu/h.0' in m.records[0]);
    const p = await raw('/api/prompt', { method: 'POST', type: 'application/json', body: JSON.stringify({ text: 'Once upon a time <script>' }) });
    assert.equal(p.status, 200, p.body);
    const r = JSON.parse(p.body);
    assert.ok(r.tokens.length > 3);
    for (const name of ['h.0', 'h.1']) {
      assert.equal(r.latents[name].length, r.tokens.length);
      assert.ok(r.latents[name].every((l: { index: number; act: number }[]) => l.length > 0 && l.every((x) => x.act > 0 && x.index >= 0 && x.index < 256)));
    }
    assert.equal((await raw('/api/prompt', { method: 'POST', type: 'application/json', body: '{"text": ""}' })).status, 400);
    assert.equal((await raw('/api/prompt', { method: 'POST', type: 'application/json', body: 'nope' })).status, 400);
    assert.equal((await raw('/api/prompt', { method: 'POST', type: 'text/plain', body: '{}' })).status, 415);
  });

  test('refuses paths that leave the folder, and foreign Host headers', async () => {
    assert.equal((await raw('/files/index.json')).status, 200);
    for (const p of ['/files/../secret.txt', '/files/..%2fsecret.txt', '/files/%2e%2e/secret.txt', '/files/h.0/../../secret.txt', '/files/..\\secret.txt', '/files/link.txt', '/static/../../package.json', '/files/%00']) {
      const r = await raw(p);
      assert.ok(r.status === 403 || r.status === 400 || r.status === 404, `${p}: ${r.status}`);
      assert.doesNotMatch(r.body, /outside|"name"/, p);
    }
    assert.equal((await raw('/api/index', { host: 'evil.example:80' })).status, 421);
    assert.equal((await raw('/files/%zz')).status, 400);
    assert.equal((await raw('/static/app.js')).status, 200);
  });
});

describe('the page in headless chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing (.ci/run installs Debian's chromium)` }, () => {
  test('loads, lists latents, opens a feature, runs the prompt view and the training curves; no request leaves localhost', async () => {
    const { chromium } = await import('playwright-core');
    const profile = mkdtempSync(join(tmpdir(), 'features-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1200, height: 900 },
    });
    const requests: string[] = [];
    const errors: string[] = [];
    context.on('request', (r) => requests.push(r.url()));
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('dialog', (d) => {
        errors.push(`dialog: ${d.message()}`);
        void d.dismiss();
      });
      await page.goto(server.url, { timeout: 60_000 });
      await page.waitForSelector('body[data-ready="1"]', { timeout: 60_000 });
      // The latent list, its filters and sorting.
      assert.equal(await page.locator('#latents tbody tr').count(), 256);
      await page.selectOption('#filter', 'dead');
      const dead = await page.locator('#latents tbody tr').count();
      await page.selectOption('#filter', 'all');
      await page.selectOption('#sort', 'max');
      const firstByMax = Number(await page.locator('#latents tbody tr').first().getAttribute('data-latent'));
      await page.fill('#search', '1');
      assert.ok((await page.locator('#latents tbody tr').count()) < 256);
      await page.fill('#search', '');
      assert.ok(dead < 256);
      // Open the top latent by max activation.
      await page.locator('#latents tbody tr').first().click();
      await page.waitForSelector('#feature-title');
      assert.match(await page.locator('#feature-title').textContent() ?? '', new RegExp(`latent ${firstByMax}\\b`));
      assert.ok((await page.locator('.context').count()) > 0, 'top contexts shown');
      assert.ok((await page.locator('svg.chart rect').count()) === 50, 'the histogram plot');
      assert.ok((await page.locator('table.logits tbody tr').count()) === 20, 'logit tables');
      const hover = await page.locator('.context .tok').first().getAttribute('title');
      assert.match(hover ?? '', /act/);
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'feature-browser-feature.png'), fullPage: false });
      // The hostile token string shows as text on the latent-0 page.
      await page.goto(`${server.url}#/feature/h.0/0`);
      await page.waitForSelector('#feature-title');
      assert.equal(await page.locator('.context img').count(), 0);
      assert.ok((await page.locator('.context').first().textContent())!.includes('<img src=x'));
      assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
      // The prompt view: activations per token, click through to a feature.
      await page.click('#nav-prompt');
      await page.fill('#prompt-text', 'Once upon a time, <script>alert(1)</script> there was a dog.');
      await page.click('#prompt-run');
      await page.waitForSelector('#prompt-tokens .tok', { timeout: 60_000 });
      const toks = await page.locator('#prompt-tokens .tok').count();
      assert.ok(toks > 5);
      assert.equal(await page.locator('#prompt-tokens script').count(), 0);
      await page.locator('#prompt-tokens .tok').nth(3).click();
      const link = page.locator('#prompt-latents a').first();
      const latent = await link.getAttribute('data-latent');
      assert.ok(latent !== null);
      await page.screenshot({ path: join(ARTIFACTS, 'feature-browser-prompt.png') });
      await link.click();
      await page.waitForSelector('#feature-title');
      assert.match(await page.locator('#feature-title').textContent() ?? '', new RegExp(`latent ${latent}\\b`));
      // Training curves of the run.
      await page.click('#nav-training');
      await page.waitForSelector('#training svg path', { state: 'attached' });
      assert.ok((await page.locator('#training h2').allTextContents()).includes('h.0'));
      const charts = await page.locator('#training h3').allTextContents();
      assert.ok(charts.includes('fvu/h.0') && charts.some((t) => t.startsWith('eval/h.0/')), charts.join(', '));
      await page.screenshot({ path: join(ARTIFACTS, 'feature-browser-training.png') });
      assert.ok(existsSync(join(ARTIFACTS, 'feature-browser-feature.png')));
    } finally {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
    assert.deepEqual(errors, []);
    const origin = server.url.replace(/\/$/, '');
    const foreign = requests.filter((u) => !u.startsWith(origin + '/') && !u.startsWith('data:') && u !== 'about:blank');
    assert.deepEqual(foreign, [], 'every request goes to the local server');
    assert.ok(requests.length >= 5);
  });
});
