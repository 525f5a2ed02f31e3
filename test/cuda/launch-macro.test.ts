// Every kernel launch and dynamic shared-memory declaration of native/cuda goes through
// launch.cuh (SPX_LAUNCH, SPX_DYNAMIC_SHARED), so the emulated device runs every kernel; and the
// inline PTX is only in the wrappers that have an emulated twin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { repoRoot } from './cuda-env.js';

const dir = join(repoRoot, 'native', 'cuda');
const sources = readdirSync(dir).filter((f) => /\.(cu|cuh|h)$/.test(f) && f !== 'launch.cuh');

test('native/cuda launches kernels only through SPX_LAUNCH and declares dynamic shared memory with SPX_DYNAMIC_SHARED', () => {
  const bad: string[] = [];
  for (const f of sources) {
    readFileSync(join(dir, f), 'utf8').split('\n').forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, '');
      if (code.includes('<<<')) bad.push(`${f}:${i + 1}: ${line.trim()}`);
      if (/extern\s+__shared__/.test(code)) bad.push(`${f}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(bad, []);
});

test('inline PTX appears only in mma_tile.cuh and wgmma_tile.cuh, next to an emulated twin', () => {
  for (const f of sources) {
    const text = readFileSync(join(dir, f), 'utf8');
    if (!/\basm\s+volatile\s*\(/.test(text)) continue;
    assert.ok(['mma_tile.cuh', 'wgmma_tile.cuh'].includes(f), `${f} has inline PTX the emulated device cannot run`);
    assert.match(text, /#ifdef SPARSIFY_CUDA_EMU/, `${f}: its PTX wrappers need SPARSIFY_CUDA_EMU bodies`);
  }
});
