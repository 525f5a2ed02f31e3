// `sparsify train --device cuda` with the SAELens kinds (jumprelu with muon, whose Adam half trains
// log_threshold; Matryoshka BatchTopK with adam) on the embedded default: a few steps, the same
// per-step metrics as the cpu run of the same flags (f32 kernels on both devices), and the cuda
// checkpoint loads and encodes on cpu. Skipped without a CUDA device (the emulated pass runs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { main } from '@sparsify/cli';
import { cudaUsable, loadSafetensors, SparseCoder, Tensor } from '@sparsify/core';

const opts = { skip: cudaUsable() ? false : 'needs a usable CUDA device (the emulated pass runs it)' };
const QUICK = ['--hookpoints', 'h.0', '--batch_size', '4', '--max_examples', '24', '--lr', '0.004', '--lr_warmup_steps', '2', '--dead_feature_threshold', '40'];

function capture() {
  const o = { out: '', err: '' };
  return { o, io: { stdout: { write: (s: string) => ((o.out += s), true) }, stderr: { write: (s: string) => ((o.err += s), true) } } };
}

async function train(device: 'cpu' | 'cuda', flags: string[]): Promise<{ dir: string; metrics: Record<string, number>[] }> {
  const dir = mkdtempSync(join(tmpdir(), `kinds-${device}-`));
  const { o, io } = capture();
  assert.equal(await main(['train', '--device', device, ...QUICK, ...flags, '--save_dir', dir, '--run_name', 'r'], io), 0, o.err);
  const metrics = readFileSync(join(dir, 'r', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => 'fvu/h.0' in m);
  return { dir, metrics };
}

for (const c of [
  { name: 'jumprelu (muon)', flags: ['--activation', 'jumprelu', '--optimizer', 'muon', '--jumprelu_init_threshold', '0.05'] },
  { name: 'matryoshka batchtopk (adam)', flags: ['--activation', 'batchtopk', '-k', '8', '--topk_threshold_lr', '0.1', '--matryoshka_prefixes', '32', '128'] },
]) {
  test(`train --device cuda: ${c.name} trains as on cpu; the checkpoint loads on cpu`, opts, async () => {
    const cpu = await train('cpu', c.flags);
    const gpu = await train('cuda', c.flags);
    try {
      assert.equal(gpu.metrics.length, cpu.metrics.length, 'logged steps');
      assert.ok(gpu.metrics.length >= 3, `${gpu.metrics.length} steps`);
      for (let s = 0; s < gpu.metrics.length; s++)
        for (const key of Object.keys(cpu.metrics[s]).filter((k) => /^(fvu|loss)\/h\.0$/.test(k))) {
          const a = gpu.metrics[s][key], b = cpu.metrics[s][key];
          // Step 0 is exact up to f32 sums; later steps carry Adam's sign-of-tiny-gradient noise.
          assert.ok(Math.abs(a - b) <= (s === 0 ? 1e-4 : 2e-2) * Math.abs(b), `step ${s} ${key}: cuda ${a} vs cpu ${b}`);
        }
      const dir = join(gpu.dir, 'r', 'h.0');
      const w = loadSafetensors(join(dir, 'sae.safetensors'));
      if (c.flags.includes('jumprelu')) {
        const lt = w.get('log_threshold')!.toFloat32Array();
        assert.ok(lt.some((v) => Math.abs(v - Math.log(0.05)) > 1e-6), 'log_threshold was trained on cuda');
      } else {
        assert.ok(w.get('topk_threshold')!.toFloat32Array()[0] > 0, 'the running threshold moved');
      }
      const coder = await SparseCoder.loadFromDisk(dir);
      const x = Tensor.from(Float32Array.from({ length: 4 * coder.dIn }, (_, i) => Math.sin(i)), [4, coder.dIn]);
      const enc = await coder.encode(x);
      assert.ok(enc.topActs.toFloat32Array().every(Number.isFinite), 'the cuda checkpoint encodes on cpu');
      coder.dispose();
    } finally {
      rmSync(cpu.dir, { recursive: true, force: true });
      rmSync(gpu.dir, { recursive: true, force: true });
    }
  });
}
