// `sparsify info` on coders of the SAELens kinds: k only where the activation keeps k latents,
// and each kind's own settings in the activation column.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { main } from '@sparsify/cli';
import { SparseCoder } from '@sparsify/core';

test('sparsify info shows the kinds\' settings, and no k for relu / jumprelu', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'info-kinds-'));
  try {
    const coders = {
      relu: { activation: 'relu', numLatents: 32 },
      jump: { activation: 'jumprelu', numLatents: 32, jumpreluBandwidth: 0.1, jumpreluSparsityLossMode: 'tanh' },
      btk: { activation: 'batchtopk', numLatents: 32, k: 4, topkThresholdLr: 0.05, matryoshkaPrefixes: [8, 16] },
      mtk: { activation: 'topk', numLatents: 32, k: 4, matryoshkaPrefixes: [8] },
    } as const;
    for (const [name, cfg] of Object.entries(coders)) {
      const c = await SparseCoder.create(8, cfg);
      await c.saveToDisk(join(dir, name));
      c.dispose();
    }
    const o = { out: '', err: '' };
    const io = { stdout: { write: (s: string) => ((o.out += s), true) }, stderr: { write: (s: string) => ((o.err += s), true) } };
    assert.equal(await main(['info', dir], io), 0, o.err);
    const row = (name: string) => o.out.split('\n').find((l) => l.startsWith(name + ' '))!.split(/\s{2,}/);
    assert.deepEqual(row('relu').slice(4, 6), ['-', 'relu (L1)']);
    assert.deepEqual(row('jump').slice(4, 6), ['-', 'jumprelu (bandwidth 0.1, tanh L0)']);
    assert.deepEqual(row('btk').slice(4, 6), ['4', 'batchtopk (threshold_lr 0.05, matryoshka 8/16)']);
    assert.deepEqual(row('mtk').slice(4, 6), ['4', 'topk (matryoshka 8)']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
