// The Trainer's computeDtype option: bf16 encoder forward, f32 backward; it trains like f32 on
// the fixture model and is not written to config.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { ValueError } from '@sparsify/core';
import { Trainer, trainConfig, type StepInfo } from '@sparsify/train';

import { fixtureDataset, tinyModel, tmp } from './helpers.js';

async function run(computeDtype: 'f32' | 'bf16') {
  const saveDir = tmp();
  const cfg = trainConfig({ logToWandb: false, runName: 'r', saveDir, batchSize: 4, lrWarmupSteps: 2, lr: 3e-3, sae: { expansionFactor: 4, k: 8 } });
  const steps: StepInfo[] = [];
  const trainer = new Trainer(cfg, fixtureDataset(), await tinyModel(), { computeDtype, onStep: (s) => steps.push(s) });
  await trainer.fit();
  return { trainer, steps, runDir: join(saveDir, 'r') };
}

test("computeDtype 'bf16': the coders run in bf16, FVU falls as with f32, config.json unchanged", async () => {
  const f32 = await run('f32');
  const b16 = await run('bf16');
  for (const e of b16.trainer.coders) assert.equal(e.coder.computeDtype, 'bf16');
  for (const e of f32.trainer.coders) assert.equal(e.coder.computeDtype, 'f32');
  for (const h of ['h.0', 'h.1']) {
    const first = b16.steps[1].coders[h].fvu, last = b16.steps.at(-1)!.coders[h].fvu;
    assert.ok(last < 0.9 * first, `${h}: bf16 fvu ${first} -> ${last}`);
    const ref = f32.steps.at(-1)!.coders[h].fvu;
    assert.ok(Math.abs(last - ref) <= 0.05 * ref, `${h}: final fvu bf16 ${last} vs f32 ${ref}`);
    // The first step's forward already differs (bf16 pre-activations), so the option took effect.
    assert.notEqual(b16.steps[0].coders[h].fvu, f32.steps[0].coders[h].fvu);
  }
  assert.equal(readFileSync(join(b16.runDir, 'config.json'), 'utf8'), readFileSync(join(f32.runDir, 'config.json'), 'utf8').replace(f32.runDir.slice(0, -2), b16.runDir.slice(0, -2)));
});

test('computeDtype: a bad value is a ValueError naming the option', async () => {
  const cfg = trainConfig({ logToWandb: false, saveDir: tmp() });
  // @ts-expect-error: not a compute dtype
  assert.throws(() => new Trainer(cfg, fixtureDataset(8), undefined as never, { computeDtype: 'fp8' }), (e: Error) => e instanceof ValueError && /TrainerOptions\.computeDtype/.test(e.message));
});
