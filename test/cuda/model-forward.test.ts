// The transformer forward on the GPU (loadModel(..., {device: 'cuda'})): every architecture
// fixture against transformers' golden activations and against the CPU forward, with a tolerance
// suited to bf16 GEMM operands (relative Frobenius error). Skips (with the reason) without a
// CUDA build or device; the no-device tests check the typed DeviceError on this kind of machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { DeviceError, Tensor, loadModel, loadSafetensors, native } from '@sparsify/core';
import type { CudaModelHandle } from '../../packages/core/src/addon-types.ts';
import { FIXTURES, MODELS, goldenPath, manifest, modelDir, tile } from '../model/helpers.js';
import { cpuBuildPath, cudaAddon, cudaBuildPath, probeCudaBuild, repoRoot } from './cuda-env.js';

const { skip } = cudaAddon();
const TOL = 2e-2; // bf16 operands (8 bits of mantissa), f32 accumulation, a few layers deep

/** ‖got − ref‖ / ‖ref‖ over all elements. */
function relFro(got: Float32Array, ref: Float32Array): number {
  assert.equal(got.length, ref.length, `length ${got.length} vs ${ref.length}`);
  let d = 0;
  let r = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    d += (got[i] - ref[i]) ** 2;
    r += ref[i] ** 2;
  }
  return Math.sqrt(d) / (Math.sqrt(r) || 1);
}

function assertFro(got: Tensor, ref: Float32Array, what: string): void {
  assert.equal(got.device, 'cuda', `${what}: expected a device tensor`);
  const e = relFro(got.toFloat32Array(), ref);
  assert.ok(e <= TOL, `${what}: relative Frobenius error ${e.toExponential(3)} > ${TOL}`);
}

for (const name of MODELS) {
  test(`${name}: the GPU forward matches transformers and the CPU forward`, { skip }, async () => {
    const entry = manifest.models[name];
    const golden = loadSafetensors(goldenPath(name));
    const gpu = await loadModel(modelDir(name), { device: 'cuda' });
    const cpu = await loadModel(modelDir(name));
    assert.equal(gpu.device, 'cuda');
    assert.deepEqual(gpu.hookpoints(), cpu.hookpoints());
    const tokens = golden.get('input_ids')!;
    const [B, T] = tokens.shape;
    const hooked = entry.tensors.filter((t) => t.sparsify_hookpoint);
    const names = gpu.hookpoints().map((h) => h.name);
    const hookpoints = [...new Set([...hooked.map((t) => t.sparsify_hookpoint!), ...gpu.layerNames(), names.at(-1)!])];
    const opts = { hookpoints, captureInputs: true, logits: true };
    const g = await gpu.forward(tokens, opts);
    const c = await cpu.forward(tokens, opts);
    assert.equal(g.layersRun, c.layersRun);
    for (const t of hooked) {
      const hp = t.sparsify_hookpoint!;
      const got = (t.name.endsWith('.input') ? g.capturedInputs! : g.captured).get(hp);
      assert.ok(got, `${t.name} (${hp}) not captured`);
      assert.deepEqual(got.shape, [B * T, t.shape[t.shape.length - 1]]);
      const ref = golden.get(t.name)!.toFloat32Array();
      assertFro(got, ref.length === got.numel ? ref : tile(ref, B), `${name} ${t.name} vs transformers`);
    }
    for (const hp of hookpoints) assertFro(g.captured.get(hp)!, c.captured.get(hp)!.toFloat32Array(), `${name} ${hp} vs CPU`);
    for (const [hp, t] of c.capturedInputs!) assertFro(g.capturedInputs!.get(hp)!, t.toFloat32Array(), `${name} input of ${hp} vs CPU`);
    assert.deepEqual(g.logits!.shape, [B, T, gpu.vocabSize]);
    assertFro(g.logits!, golden.get('logits')!.toFloat32Array(), `${name} logits vs transformers`);
    // Stops after the deepest needed block, as the CPU forward does.
    const first = await gpu.forward(tokens, { hookpoints: [gpu.layerNames()[0]] });
    assert.equal(first.layersRun, 1);
    gpu.dispose();
    cpu.dispose();
  });
}

test('variant configs (head_dim != hidden/heads, sequential NeoX, inverse-layer scaling, sliding window) on the GPU', { skip }, async () => {
  const golden = loadSafetensors(join(FIXTURES, 'golden', 'variants.safetensors'));
  for (const name of ['llama_headdim_bias', 'neox_sequential', 'gpt2_scaled', 'qwen2_window']) {
    const model = await loadModel(join(FIXTURES, 'variants', name), { device: 'cuda' });
    const names = model.hookpoints().map((h) => h.name);
    const first = names.find((n) => n === 'drop' || n === 'emb_dropout') ?? names[0];
    const hidden = [first, ...model.layerNames().slice(0, -1), names.at(-1)!];
    const out = await model.forward(golden.get(`${name}.input_ids`)!, { hookpoints: hidden, logits: true });
    hidden.forEach((h, i) => assertFro(out.captured.get(h)!, golden.get(`${name}.hidden_states.${i}`)!.toFloat32Array(), `${name} ${h}`));
    assertFro(out.logits!, golden.get(`${name}.logits`)!.toFloat32Array(), `${name} logits`);
    model.dispose();
  }
});

test('long sequences (150 tokens: several attention tiles, sliding window) on the GPU', { skip }, async () => {
  const g = loadSafetensors(join(FIXTURES, 'golden', 'long.safetensors'));
  for (const name of ['llama', 'gemma2', 'gpt2']) {
    const model = await loadModel(modelDir(name), { device: 'cuda' });
    const final = model.hookpoints().at(-1)!.name;
    const out = await model.forward(g.get(`${name}.input_ids`)!, { hookpoints: [final] });
    assertFro(out.captured.get(final)!, g.get(`${name}.final_norm`)!.toFloat32Array(), `${name} long`);
    model.dispose();
  }
});

test('splicing on the GPU (host and device splice tensors) matches the CPU forward', { skip }, async () => {
  const info = JSON.parse(readFileSync(join(FIXTURES, 'modules.json'), 'utf-8')) as {
    splice: { model: string; hookpoint: string; mode: 'zeros' | 'half' }[];
  };
  for (const c of info.splice) {
    const gpu = await loadModel(modelDir(c.model), { device: 'cuda' });
    const cpu = await loadModel(modelDir(c.model));
    const tokens = loadSafetensors(goldenPath(c.model)).get('input_ids')!;
    const final = cpu.hookpoints().at(-1)!.name;
    const own = (await cpu.forward(tokens, { hookpoints: [c.hookpoint] })).captured.get(c.hookpoint)!;
    const values = own.toFloat32Array().map((x) => (c.mode === 'zeros' ? 0 : 0.5 * x));
    const host = Tensor.from(values, own.shape);
    const ref = await cpu.forward(tokens, { hookpoints: [final], logits: true, splice: new Map([[c.hookpoint, host]]) });
    for (const sp of [host, await host.to('cuda')]) {
      const out = await gpu.forward(tokens, { hookpoints: [final], logits: true, splice: new Map([[c.hookpoint, sp]]) });
      assertFro(out.captured.get(final)!, ref.captured.get(final)!.toFloat32Array(), `${c.model} ${c.hookpoint} ${sp.device} splice`);
      assertFro(out.logits!, ref.logits!.toFloat32Array(), `${c.model} ${c.hookpoint} ${sp.device} splice logits`);
    }
    gpu.dispose();
    cpu.dispose();
  }
});

// The batch is the attention kernel's gridDim.z (<= 65535) and B·T the GEMMs' rows: more
// sequences than that run as chunked launches. The last sequences are checked on their own, so a
// chunked launch that skipped them cannot hide in the global error. The first block's output is
// enough (its attention, MLP and GEMMs see the whole batch) and the forward stops there.
test('a batch of more than 65535 sequences on the GPU matches the CPU forward', { skip }, async () => {
  const gpu = await loadModel(modelDir('llama'), { device: 'cuda' });
  const cpu = await loadModel(modelDir('llama'));
  const B = 66_000, T = 3;
  const tokens = Tensor.from(Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + 13) % gpu.vocabSize), [B, T]);
  const first = cpu.hookpoints().find((h) => h.name === 'layers.0')!.name;
  const g = (await gpu.forward(tokens, { hookpoints: [first] })).captured.get(first)!;
  const c = (await cpu.forward(tokens, { hookpoints: [first] })).captured.get(first)!.toFloat32Array();
  assertFro(g, c, `llama B=${B}`);
  const H = gpu.hiddenSize, tail = (B - 65_535) * T * H;
  const e = relFro(g.toFloat32Array().subarray(-tail), c.subarray(-tail));
  assert.ok(e <= TOL, `sequences past 65535: relative Frobenius error ${e.toExponential(3)}`);
  gpu.dispose();
  cpu.dispose();
});

// CudaModel.forward accepts device tensors (splices), but token ids are range-checked on the host:
// device ids are a DeviceError; LanguageModel.forward moves device ids to the host itself.
test('device token ids: CudaModel.forward rejects them, LanguageModel.forward moves them', { skip }, async () => {
  const a = native() as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const create = a.cudaModelCreate;
  let resident: CudaModelHandle | undefined;
  a.cudaModelCreate = async (...args: unknown[]) => (resident = (await create.apply(a, args)) as CudaModelHandle);
  let gpu;
  try {
    gpu = await loadModel(modelDir('gpt2'), { device: 'cuda' });
  } finally {
    a.cudaModelCreate = create;
  }
  const tokens = loadSafetensors(goldenPath('gpt2')).get('input_ids')!;
  const dev = await tokens.to('cuda');
  await assert.rejects(
    async () => resident!.forward(dev.handle, { outputs: ['h.0'] }),
    (e: unknown) => e instanceof DeviceError && /tokens/.test((e as Error).message),
  );
  const viaDev = (await gpu.forward(dev, { hookpoints: ['h.0'] })).captured.get('h.0')!;
  const viaHost = (await gpu.forward(tokens, { hookpoints: ['h.0'] })).captured.get('h.0')!;
  assert.deepEqual(viaDev.toFloat32Array(), viaHost.toFloat32Array());
  // A method on another object is an error (the class's receiver check), not a crash.
  assert.throws(() => (resident!.forward as any).call({}, tokens.handle, { outputs: ['h.0'] }), TypeError);
  gpu.dispose();
  assert.throws(() => resident!.forward(tokens.handle, { outputs: ['h.0'] }), { code: 'ERR_SPARSIFY_DISPOSED' });
});

// ---- without a device (runs on CPU-only machines)

function runChild(code: string, env: Record<string, string | undefined>) {
  const r = spawnSync(process.execPath, ['--conditions=sparsify-source', '--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `child failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const tryLoad = `import { loadModel, DeviceError, nativePath } from '@sparsify/core';
  let err, auto;
  try { await loadModel(${JSON.stringify(modelDir('gpt2'))}, { device: 'cuda' }); } catch (e) { err = e; }
  const m = await loadModel(${JSON.stringify(modelDir('gpt2'))}, { device: 'auto' });
  auto = m.device; m.dispose();
  console.log(JSON.stringify({ path: nativePath(), isDeviceError: err instanceof DeviceError, name: err?.name, code: err?.code,
    message: err?.message, auto }));`;

test("loadModel(device: 'cuda') with the CPU build: DeviceError ERR_SPARSIFY_CUDA_UNAVAILABLE", (t) => {
  if (!existsSync(cpuBuildPath)) return t.skip(`no CPU build at ${cpuBuildPath}`);
  const out = runChild(tryLoad, { SPARSIFY_NATIVE: cpuBuildPath, SPARSIFY_DEVICE: undefined });
  assert.equal(out.path, cpuBuildPath);
  assert.equal(out.isDeviceError, true, JSON.stringify(out));
  assert.equal(out.code, 'ERR_SPARSIFY_CUDA_UNAVAILABLE');
  assert.match(out.message, /CUDA build of the native addon.*CPU build/);
  assert.equal(out.auto, 'cpu');
});

test("loadModel(device: 'cuda') with the CUDA build and no device: DeviceError ERR_SPARSIFY_CUDA_UNAVAILABLE", (t) => {
  if (!existsSync(cudaBuildPath)) return t.skip(`no CUDA build at ${cudaBuildPath}`);
  const probe = probeCudaBuild()!;
  if (probe.devices > 0) return t.skip(`a CUDA device is present (${probe.name}); the no-device path cannot be exercised`);
  // SPARSIFY_DEVICE=cuda keeps the CUDA build loaded without a device (see native.ts).
  const out = runChild(tryLoad, { SPARSIFY_NATIVE: cudaBuildPath, SPARSIFY_DEVICE: 'cuda' });
  assert.equal(out.path, cudaBuildPath);
  assert.equal(out.isDeviceError, true, JSON.stringify(out));
  assert.equal(out.name, 'DeviceError');
  assert.equal(out.code, 'ERR_SPARSIFY_CUDA_UNAVAILABLE');
  assert.match(out.message, /no usable CUDA device: cudaError\w+/);
  assert.equal(out.auto, 'cpu');
});

test('an unknown device is rejected', async () => {
  await assert.rejects(loadModel(modelDir('gpt2'), { device: 'tpu' as never }), DeviceError);
});

test('cudaModelCreate rejects non-model arguments on the JS thread; the model calls are CudaModel methods (CUDA build, no device needed)', (t) => {
  if (!existsSync(cudaBuildPath)) return t.skip(`no CUDA build at ${cudaBuildPath}`);
  const out = runChild(
    `import { native, ValueError, Tensor } from '@sparsify/core';
     const a = native();
     const res = {};
     for (const [k, f] of [['create', () => a.cudaModelCreate({})], ['createTensor', () => a.cudaModelCreate(Tensor.zeros([2]).handle)],
                           ]) {
       try { await f(); res[k] = 'no error'; } catch (e) { res[k] = (e instanceof ValueError) + ' ' + e.message; }
     }
     res.gone = ['cudaModelForward', 'cudaModelDispose'].filter((n) => n in a);
     console.log(JSON.stringify(res));`,
    { SPARSIFY_NATIVE: cudaBuildPath, SPARSIFY_DEVICE: 'cuda' },
  );
  assert.match(out.create, /^true .*must be a NativeModel/);
  assert.match(out.createTensor, /^true .*must be a NativeModel/);
  assert.deepEqual(out.gone, []);
});
