// Takes the README's screenshot of the feature browser: serves a features output, opens one
// latent's page in Debian's chromium (playwright-core) and saves a PNG.
//   node --conditions=sparsify-source --import tsx scripts/feature-browser-screenshot.ts <features dir> <out.png> [hookpoint] [latent]
// Without a latent it picks the one with the highest max activation among those firing on
// 0.2%-3% of tokens (sparse, readable features).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { FeatureFile, readFeaturesIndex } from '@sparsify/train';
import { chromium } from 'playwright-core';

import { startViewServer } from '../packages/cli/src/view/server.ts';

const [dir, out, hookArg, latentArg] = process.argv.slice(2);
if (!dir || !out) {
  console.error('usage: feature-browser-screenshot.ts <features dir> <out.png> [hookpoint] [latent]');
  process.exit(2);
}
const index = readFeaturesIndex(dir);
const hook = hookArg ?? index.hookpoints[0].name;
const s = new FeatureFile(dir, hook).summary;
const latent =
  latentArg !== undefined
    ? Number(latentArg)
    : [...s.max_act.keys()].filter((i) => s.frac_nonzero[i] > 0.002 && s.frac_nonzero[i] < 0.03).sort((a, b) => s.max_act[b] - s.max_act[a])[0] ?? 0;
const server = await startViewServer({ dir, port: 0 });
const profile = mkdtempSync(join(tmpdir(), 'screenshot-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 860 },
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`${server.url}#/feature/${encodeURIComponent(hook)}/${latent}`);
  await page.waitForSelector('#feature-title');
  await page.screenshot({ path: out });
  console.error(`saved ${out} (${hook} latent ${latent})`);
} finally {
  await context.close();
  await server.close();
  rmSync(profile, { recursive: true, force: true });
}
