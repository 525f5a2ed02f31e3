// The CUDA start-up self-test (native/cuda/self_test.cu, packages/core/src/cuda-self-test.ts):
// it passes on this device; a corrupted kernel family (fault injected through the emulated
// device's SPARSIFY_CUDA_SELFTEST_FAULT hook) disables CUDA with a warning naming it, auto falls
// back to cpu, `device: 'cuda'` is a DeviceError; SPARSIFY_CUDA_SELFTEST=0 skips the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { cudaAddon, cudaBuildPath, repoRoot } from './cuda-env.js';

const { addon, skip } = cudaAddon();
const emulated = !skip && String(addon!.cudaProbe().name).includes('emulated');
const noFaultHook = skip ?? (emulated ? false : 'fault injection exists only in the emulated-device build');

function child(code: string, env: Record<string, string>) {
  const r = spawnSync(process.execPath, ['--conditions=sparsify-source', '--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: repoRoot,
    env: { ...process.env, SPARSIFY_NATIVE: cudaBuildPath, SPARSIFY_CUDA_GEMM: 'mma', ...env },
    encoding: 'utf8',
    timeout: 300_000,
  });
  assert.equal(r.status, 0, `child failed:\n${r.stdout}\n${r.stderr}`);
  return { out: JSON.parse(r.stdout.trim().split('\n').pop()!), stderr: r.stderr };
}

test('the start-up self-test passes on this device', { skip: skip ?? false }, () => {
  const r = addon!.cudaSelfTest() as { ok: boolean; kernel?: string; error?: string; ms: number };
  assert.equal(r.ok, true, `${r.kernel}: ${r.error}`);
  if (!emulated) assert.ok(r.ms < 1000, `self-test took ${r.ms} ms`);
});

// Every family of native/cuda/self_test.cu. gemm_wgmma runs only where gemm_path() chose wgmma
// (sm_90): on the emulated sm_80 device its fault cannot show, and the test says so.
const arch = process.env.SPARSIFY_CUDA_EMU_ARCH ?? 'sm_90';
const FAMILIES = [
  'gemm_mma', 'gemm_wgmma', 'matmul', 'encoder', 'encoder_backward', 'decode', 'decode_backward',
  'adam', 'signum', 'muon', 'grad_clip', 'layer_norm', 'rms_norm', 'rope', 'activation', 'attention', 'gather',
];
for (const family of FAMILIES) {
  const skipThis = noFaultHook || (family === 'gemm_wgmma' && arch !== 'sm_90' ? 'wgmma runs only on the sm_90 device' : false);
  test(`a fault in '${family}' disables CUDA: warning, auto -> cpu, device 'cuda' -> DeviceError`, { skip: skipThis }, () => {
    const { out, stderr } = child(
      `import { cudaUsable, SparseCoder } from '@sparsify/core';
       const out = { usable: cudaUsable() };
       try { await SparseCoder.create(16, { k: 2, numLatents: 32 }, { device: 'cuda' }); out.created = true; }
       catch (e) { out.error = [e.name, e.code, e.message]; }
       console.log(JSON.stringify(out));`,
      { SPARSIFY_CUDA_SELFTEST_FAULT: family, ...(family === 'gemm_wgmma' ? { SPARSIFY_CUDA_GEMM: '' } : {}) },
    );
    assert.equal(out.usable, false);
    assert.equal(out.created, undefined);
    assert.equal(out.error[0], 'DeviceError');
    assert.equal(out.error[1], 'ERR_SPARSIFY_CUDA_SELFTEST');
    assert.match(out.error[2], new RegExp(`kernel family '${family}'`));
    assert.match(stderr, new RegExp(`CUDA disabled for this process: the CUDA start-up self-test failed in kernel family '${family}'`));
  });
}

test('SPARSIFY_CUDA_SELFTEST=0 skips the self-test (a fault then goes unnoticed)', { skip: noFaultHook }, () => {
  const { out } = child(
    `import { cudaUsable } from '@sparsify/core'; console.log(JSON.stringify({ usable: cudaUsable() }));`,
    { SPARSIFY_CUDA_SELFTEST_FAULT: 'encoder', SPARSIFY_CUDA_SELFTEST: '0' },
  );
  assert.equal(out.usable, true);
});

// The CLI on a device whose self-test fails: `--device auto` warns and trains on cpu, `--device
// cuda` is the DeviceError (exit 1) before anything loads.
const cliRun = (device: string) => `
  import { main } from '@sparsify/cli';
  import { mkdtempSync } from 'node:fs';
  import { tmpdir } from 'node:os';
  import { join } from 'node:path';
  const o = { out: '', err: '' };
  const io = { stdout: { write: (s) => (o.out += s) }, stderr: { write: (s) => (o.err += s), isTTY: false, columns: 200 } };
  const dir = mkdtempSync(join(tmpdir(), 'spx-selftest-'));
  const code = await main(['train', '--device', '${device}', '--max_examples', '8', '--batch_size', '4', '--save_dir', dir, '--run_name', 'x'], io);
  console.log(JSON.stringify({ code, ...o }));`;

test('CLI with a failing self-test: --device auto falls back to cpu with the warning and trains', { skip: noFaultHook }, () => {
  const { out, stderr } = child(cliRun('auto'), { SPARSIFY_CUDA_SELFTEST_FAULT: 'attention' });
  assert.equal(out.code, 0, out.err);
  assert.doesNotMatch(out.err, /using cuda/);
  assert.match(out.out, /done: 2 steps/);
  assert.match(stderr, /CUDA disabled for this process: the CUDA start-up self-test failed in kernel family 'attention'/);
});

test('CLI with a failing self-test: --device cuda is a DeviceError naming the kernel family, exit 1', { skip: noFaultHook }, () => {
  const { out } = child(cliRun('cuda'), { SPARSIFY_CUDA_SELFTEST_FAULT: 'muon' });
  assert.equal(out.code, 1);
  assert.match(out.err, /^sparsify: error: --device cuda: device 'cuda' is disabled: the CUDA start-up self-test failed in kernel family 'muon'/m);
  assert.doesNotMatch(out.out, /done:/);
});
