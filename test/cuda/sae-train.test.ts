// The device-resident training state (CudaSaeState from cudaSaeCreate): one forward/backward against a float64 reference
// of sparsify's SAE forward, FVU + AuxK loss and FusedEncoder/embedding-bag backward, then Adam
// and signum updates. Skipped with the reason when there is no CUDA build or device.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Tensor, saeOps } from '@sparsify/core';

import { cudaAddon } from './cuda-env.js';
import { lerp, randn, referenceSaeStep, rng, roundTo, worst } from './reference.js';

const { addon, skip } = cudaAddon();
const opts = { skip: skip ?? false };
const seed = Number(process.env.SPARSIFY_TEST_SEED ?? Math.floor(Math.random() * 1e9));
const tag = `(seed ${seed})`;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const f32 = (h: any) => new Tensor(h).toFloat32Array();

test('resident SAE step: losses, indices and gradients match the float64 reference; Adam and signum apply', opts, async () => {
  const r = rng(seed);
  const N = 48, D = 64, M = 512, k = 8, alpha = 1 / 32;
  const wEnc = randn(M * D, r, 1 / Math.sqrt(D)), bEnc = randn(M, r, 0.05), bDec = randn(D, r, 0.1);
  const wDec = Float32Array.from(wEnc);
  const x = randn(N * D, r);
  const dead = new Int32Array(M).map(() => (r() < 0.25 ? 1 : 0));
  const T = (a: Float32Array, s: number[]) => Tensor.from(a, s).handle;
  const sae = await addon!.cudaSaeCreate({ wEnc: T(wEnc, [M, D]), bEnc: T(bEnc, [M]), wDec: T(wDec, [M, D]), bDec: T(bDec, [D]) }, { k });
  assert.equal(sae.numLatents, M);
  const res = await sae.forwardBackward(T(x, [N, D]), { deadMask: Tensor.from(dead, [M]).handle, auxkAlpha: alpha, outputs: true }); // outputs: the indices come back
  const ref = referenceSaeStep({ wEnc: Float64Array.from(wEnc), bEnc: Float64Array.from(bEnc), wDec: Float64Array.from(wDec), bDec: Float64Array.from(bDec) },
    x, N, D, M, k, dead, alpha);
  assert.ok(Math.abs(res.fvu - ref.fvu) <= 1e-4 * ref.fvu, `fvu ${res.fvu} vs ${ref.fvu} ${tag}`);
  assert.ok(Math.abs(res.auxkLoss - ref.auxk) <= 1e-4 * ref.auxk + 1e-9, `auxk ${res.auxkLoss} vs ${ref.auxk} ${tag}`);
  assert.deepEqual([...new Tensor(res.indices).toInt32Array()], [...ref.idx], `indices ${tag}`);
  const got = await sae.read({ grads: true });
  for (const [name, want] of [['gradWEnc', ref.g.wEnc], ['gradBEnc', ref.g.bEnc], ['gradWDec', ref.g.wDec], ['gradBDec', ref.g.bDec]] as const) {
    const scale = Math.max(...Array.from(want, Math.abs));
    const w = worst(f32(got[name]), want, 1e-3, 1e-4 * scale);
    assert.ok(w.ratio <= 1, `${name}[${w.at}]: ${f32(got[name])[w.at]} vs ${want[w.at]} ${tag}`);
  }
  // sparsify HEAD's AuxK (e_hat + b_dec, #132) on request.
  const s3 = await addon!.cudaSaeCreate({ wEnc: T(wEnc, [M, D]), bEnc: T(bEnc, [M]), wDec: T(wDec, [M, D]), bDec: T(bDec, [D]) }, { k });
  const r3 = await s3.forwardBackward(T(x, [N, D]), { deadMask: Tensor.from(dead, [M]).handle, auxkAlpha: alpha, auxkIncludesBDec: true });
  const ref3 = referenceSaeStep({ wEnc: Float64Array.from(wEnc), bEnc: Float64Array.from(bEnc), wDec: Float64Array.from(wDec), bDec: Float64Array.from(bDec) },
    x, N, D, M, k, dead, alpha, 'bfloat16', true);
  assert.ok(Math.abs(r3.auxkLoss - ref3.auxk) <= 1e-4 * ref3.auxk + 1e-9, `auxk with b_dec ${tag}`);
  const g3 = await s3.read({ grads: true });
  for (const [name, want] of [['gradWDec', ref3.g.wDec], ['gradBDec', ref3.g.bDec]] as const) {
    const w = worst(f32(g3[name]), want, 1e-3, 1e-4 * Math.max(...Array.from(want, Math.abs)));
    assert.ok(w.ratio <= 1, `${name} (e_hat + b_dec)[${w.at}] ${tag}`);
  }
  s3.dispose();

  const wDecNow = f32(got.wDec);  // renormalised on the device
  const wn = worst(wDecNow, ref.wDecNormalized, 1e-5, 1e-7);
  assert.ok(wn.ratio <= 1, `normalised W_dec ${tag}`);

  // Adam: projection of the W_dec gradient, then one update; compare with the device's own gradients.
  const lr = 1e-3;
  const before = await sae.read({ grads: true });
  await sae.apply({ optimizer: 'adam', lr, step: 1 });
  const after = await sae.read({ grads: true });
  const pNames = [['wEnc', 'gradWEnc'], ['bEnc', 'gradBEnc'], ['wDec', 'gradWDec'], ['bDec', 'gradBDec']] as const;
  for (const [pn, gn] of pNames) {
    const p0 = f32(before[pn]), g0 = Float64Array.from(f32(before[gn])), p1 = f32(after[pn]);
    if (pn === 'wDec')  // remove_gradient_parallel_to_decoder_directions
      for (let m = 0; m < M; m++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += g0[m * D + d] * p0[m * D + d];
        for (let d = 0; d < D; d++) g0[m * D + d] -= dot * p0[m * D + d];
      }
    const want = p0.map((v, i) => {
      const m1 = (1 - 0.9) * g0[i], v1 = (1 - 0.999) * g0[i] * g0[i];
      return v - (lr / (1 - 0.9)) * (m1 / (Math.sqrt(v1) / Math.sqrt(1 - 0.999) + 1e-8));
    });
    // |update| ≈ lr where g != 0; a gradient within rounding of 0 may flip: allow 2.5·lr there, rarely.
    let off = 0;
    for (let i = 0; i < p1.length; i++) {
      const diff = Math.abs(p1[i] - want[i]);
      assert.ok(diff <= 2.5 * lr, `${pn}[${i}] ${p1[i]} vs ${want[i]} ${tag}`);
      if (diff > 1e-6 + 1e-5 * Math.abs(want[i])) off++;
    }
    assert.ok(off <= Math.max(2, p1.length * 1e-3), `${pn}: ${off} elements off ${tag}`);
    assert.ok(f32(after[gn]).every((v) => v === 0), `${gn} not zeroed ${tag}`);
  }

  // Signum (schedule-free) on a fresh state: z starts at y; check one step elementwise.
  const s2 = await addon!.cudaSaeCreate({ wEnc: T(wEnc, [M, D]), bEnc: T(bEnc, [M]), wDec: T(wDec, [M, D]), bDec: T(bDec, [D]) }, { k, normalizeDecoder: false });
  await s2.forwardBackward(T(x, [N, D]), {});
  const b2 = await s2.read({ grads: true });
  await s2.apply({ optimizer: 'signum', lr: 5e-3, c: 1 });
  const a2 = await s2.read({}), ev = await s2.read({ evalBeta: 0.95 });
  const y0 = f32(b2.bEnc), g2 = f32(b2.gradBEnc), y1 = f32(a2.bEnc), x1 = f32(ev.bEnc);
  for (let i = 0; i < M; i++) {
    let xx = lerp(y0[i], y0[i], 1 - 1 / 0.95);
    const z = y0[i] - 5e-3 * Math.sign(g2[i]);
    xx = lerp(xx, z, 1);
    const y = lerp(xx, z, 1 - 0.95);
    assert.ok(Math.abs(y1[i] - y) <= 1e-6, `signum y[${i}] ${tag}`);
    assert.ok(Math.abs(x1[i] - lerp(y, z, 1 - 1 / 0.95)) <= 1e-6, `signum eval x[${i}] ${tag}`);
  }
  sae.dispose();
  s2.dispose();
  assert.throws(() => sae.read({}), { code: 'ERR_SPARSIFY_DISPOSED' });
});

test('resident SAE step agrees with the CPU saeStep of @sparsify/core', opts, async () => {
  const r = rng(seed + 11);
  const N = 40, D = 48, M = 384, k = 6, alpha = 1 / 32;
  // bf16-representable operands and b_dec = 0: the GPU's bf16 rounding is then exact, and both
  // sides differ only by f32 summation order.
  const wEnc = roundTo(randn(M * D, r, 1 / Math.sqrt(D)), 'bfloat16'), bEnc = randn(M, r, 0.05);
  const x = roundTo(randn(N * D, r), 'bfloat16'), bDec = new Float32Array(D);
  const dead = new Uint8Array(M).map(() => (r() < 0.3 ? 1 : 0));
  const w = { encW: Tensor.from(wEnc, [M, D]), encB: Tensor.from(bEnc, [M]), W_dec: Tensor.from(wEnc, [M, D]), b_dec: Tensor.from(bDec, [D]) };
  const g = { encW: Tensor.zeros([M, D]), encB: Tensor.zeros([M]), W_dec: Tensor.zeros([M, D]), b_dec: Tensor.zeros([D]) };
  const cpu = await saeOps.saeStep(w, g, Tensor.from(x, [N, D]), undefined, { k, groupmax: false, transcode: false, multiTopk: false },
    { deadMask: dead, auxkAlpha: alpha, lossScale: 1, normalizeDecoder: true });
  const sae = await addon!.cudaSaeCreate({ wEnc: Tensor.from(wEnc, [M, D]).handle, bEnc: Tensor.from(bEnc, [M]).handle,
    wDec: Tensor.from(wEnc, [M, D]).handle, bDec: Tensor.from(bDec, [D]).handle }, { k });
  const gpu = await sae.forwardBackward(Tensor.from(x, [N, D]).handle,
    { deadMask: Tensor.from(Int32Array.from(dead), [M]).handle, auxkAlpha: alpha });
  assert.ok(Math.abs(gpu.fvu - cpu.fvu) <= 1e-4 * cpu.fvu, `fvu gpu ${gpu.fvu} cpu ${cpu.fvu} ${tag}`);
  assert.ok(Math.abs(gpu.auxkLoss - cpu.auxkLoss) <= 1e-4 * cpu.auxkLoss + 1e-9, `auxk gpu ${gpu.auxkLoss} cpu ${cpu.auxkLoss} ${tag}`);
  const got = await sae.read({ grads: true });
  for (const [gn, cn] of [['gradWEnc', 'encW'], ['gradBEnc', 'encB'], ['gradWDec', 'W_dec'], ['gradBDec', 'b_dec']] as const) {
    const want = g[cn].toFloat32Array(), have = f32(got[gn]);
    const wr = worst(have, want, 1e-3, 1e-4 * Math.max(...Array.from(want, Math.abs)));
    assert.ok(wr.ratio <= 1, `${gn}[${wr.at}]: gpu ${have[wr.at]} cpu ${want[wr.at]} ${tag}`);
  }
  const wd = worst(f32(got.wDec), w.W_dec.toFloat32Array(), 1e-6, 1e-7);
  assert.ok(wd.ratio <= 1, `normalised W_dec gpu vs cpu ${tag}`);
  sae.dispose();
});

// skip_connection (W_skip, a fifth resident parameter) and Multi-TopK on the device, against the
// CPU saeStep (which defines the math) and the float64 reference; then Adam on all five
// parameters and the optimizer state in/out with W_skip's slots. Never run on a GPU yet.
test('resident SAE step with W_skip and Multi-TopK agrees with the CPU saeStep; W_skip in apply / read / state', opts, async () => {
  const r = rng(seed + 23);
  const N = 40, D = 48, M = 384, k = 6, alpha = 1 / 32;
  // bf16-representable encoder operands and b_dec = 0 (exact bf16 rounding on the GPU, as above).
  const wEnc = roundTo(randn(M * D, r, 1 / Math.sqrt(D)), 'bfloat16'), bEnc = randn(M, r, 0.05);
  const x = roundTo(randn(N * D, r), 'bfloat16'), bDec = new Float32Array(D), wSkip = randn(D * D, r, 0.1);
  const dead = new Uint8Array(M).map(() => (r() < 0.3 ? 1 : 0));
  const T = (a: Float32Array, s: number[]) => Tensor.from(a, s);
  const w = { encW: T(wEnc, [M, D]), encB: T(bEnc, [M]), W_dec: T(wEnc, [M, D]), b_dec: T(bDec, [D]), W_skip: T(wSkip, [D, D]) };
  const g = { encW: Tensor.zeros([M, D]), encB: Tensor.zeros([M]), W_dec: Tensor.zeros([M, D]), b_dec: Tensor.zeros([D]), W_skip: Tensor.zeros([D, D]) };
  const cpu = await saeOps.saeStep(w, g, T(x, [N, D]), undefined, { k, groupmax: false, transcode: false, multiTopk: true },
    { deadMask: dead, auxkAlpha: alpha, lossScale: 1, normalizeDecoder: true, outputs: true });
  const params = () => ({ wEnc: T(wEnc, [M, D]).handle, bEnc: T(bEnc, [M]).handle, wDec: T(wEnc, [M, D]).handle, bDec: T(bDec, [D]).handle, wSkip: T(wSkip, [D, D]).handle });
  const sae = await addon!.cudaSaeCreate(params(), { k });
  const gpu = await sae.forwardBackward(T(x, [N, D]).handle,
    { deadMask: Tensor.from(Int32Array.from(dead), [M]).handle, auxkAlpha: alpha, multiTopk: true, outputs: true });
  for (const [name, a, b] of [['fvu', gpu.fvu, cpu.fvu], ['auxk', gpu.auxkLoss, cpu.auxkLoss], ['multi_topk_fvu', gpu.multiTopkFvu, cpu.multiTopkFvu]] as const)
    assert.ok(Math.abs(a - b) <= 1e-4 * b + 1e-9, `${name} gpu ${a} cpu ${b} ${tag}`);
  assert.ok(cpu.multiTopkFvu > 0);
  // With Multi-TopK the step returns the 4k selection (as the CPU does): same sets per row.
  const gi = new Tensor(gpu.indices).toInt32Array(), ci = cpu.latentIndices!.toInt32Array();
  assert.equal(gi.length, N * 4 * k);
  for (let n = 0; n < N; n++)
    assert.deepEqual([...gi.subarray(n * 4 * k, (n + 1) * 4 * k)].sort((p, q) => p - q), [...ci.subarray(n * 4 * k, (n + 1) * 4 * k)].sort((p, q) => p - q), `row ${n} ${tag}`);
  const so = worst(f32(gpu.saeOut), cpu.saeOut!.toFloat32Array(), 1e-4, 1e-5);
  assert.ok(so.ratio <= 1, `saeOut (the 4k decode) [${so.at}] ${tag}`);
  const got = await sae.read({ grads: true });
  for (const [gn, cn] of [['gradWEnc', 'encW'], ['gradBEnc', 'encB'], ['gradWDec', 'W_dec'], ['gradBDec', 'b_dec'], ['gradWSkip', 'W_skip']] as const) {
    const want = g[cn].toFloat32Array(), have = f32(got[gn]);
    const wr = worst(have, want, 1e-3, 1e-4 * Math.max(...Array.from(want, Math.abs)));
    assert.ok(wr.ratio <= 1, `${gn}[${wr.at}]: gpu ${have[wr.at]} cpu ${want[wr.at]} ${tag}`);
  }
  assert.deepEqual(f32(got.wSkip), wSkip, 'W_skip is not renormalised by the forward');

  // Adam on five parameters: W_skip moves by ~lr against its gradient's sign (first step), and is not projected.
  const lr = 1e-3;
  await sae.apply({ optimizer: 'adam', lr, step: 1 });
  const after = await sae.read({ grads: true });
  const gs = f32(got.gradWSkip), ws1 = f32(after.wSkip);
  let moved = 0;
  for (let i = 0; i < D * D; i++) {
    if (Math.abs(gs[i]) < 1e-6) continue;
    assert.ok(Math.abs(ws1[i] - (wSkip[i] - lr * Math.sign(gs[i]))) <= 1e-2 * lr + 1e-6, `W_skip[${i}] ${ws1[i]} ${tag}`);
    moved++;
  }
  assert.ok(moved > D * D * 0.9, `W_skip entries updated: ${moved}`);
  assert.ok(f32(after.gradWSkip).every((v) => v === 0), 'W_skip gradient zeroed');
  const st = await sae.readState();
  assert.equal(st.m.length, 5);
  assert.deepEqual(new Tensor(st.m[4]).shape, [D, D]);
  // State into a fresh coder with W_skip: read back equal.
  const s2 = await addon!.cudaSaeCreate(params(), { k });
  await s2.loadState({ params: { wSkip: after.wSkip }, m: st.m, v: st.v });
  const st2 = await s2.readState();
  for (let i = 0; i < 5; i++) assert.deepEqual(f32(st2.v[i]), f32(st.v[i]), `v[${i}]`);
  assert.deepEqual(f32((await s2.read({})).wSkip), ws1);
  // multi_topk needs 4k <= num_latents (and <= 8192 on CUDA): a typed error before any GPU work.
  await assert.rejects(async () => s2.forwardBackward(T(x, [N, D]).handle, { multiTopk: true, k: M / 2 }), /multi_topk needs 4\*k/);
  // A state without W_skip rejects W_skip entries.
  const s3 = await addon!.cudaSaeCreate({ ...params(), wSkip: undefined }, { k });
  await assert.rejects(async () => s3.loadState({ params: { wSkip: after.wSkip } }), /no skip connection/);
  await assert.rejects(async () => s3.loadState({ m: st.m, v: st.v }), /array of 4 tensors/);
  for (const s of [sae, s2, s3]) s.dispose();
});

test('CudaSaeState: apply validates its options (muon included); methods are the state calls', opts, async () => {
  const M = 8, D = 2;
  const z = (n: number, s: number[]) => Tensor.from(new Float32Array(n), s).handle;
  const sae = await addon!.cudaSaeCreate({ wEnc: z(M * D, [M, D]), bEnc: z(M, [M]), wDec: z(M * D, [M, D]), bDec: z(D, [D]) }, { k: 2 });
  assert.equal(sae.numLatents, M);
  assert.equal(sae.dIn, D);
  const muon = { optimizer: 'muon', lr: 1e-3, vectorLr: 5e-4, step: 1 };
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ optimizer: 'sgd', lr: 1e-3 }, /^optimizer must be 'adam', 'signum' or 'muon', got 'sgd'/],
    [{ ...muon, vectorLr: undefined }, /^muon: vectorLr \(the Adam half's lr\) must be a finite number >= 0/],
    [{ ...muon, lr: Infinity }, /^muon: lr must be a finite number >= 0/],
    [{ ...muon, momentum: 1 }, /^muon: momentum must be in \[0, 1\)/],
    [{ ...muon, weightDecay: -0.1 }, /^muon: weightDecay must be a finite number >= 0/],
    [{ ...muon, nsSteps: 101 }, /^muon: nsSteps must be in \[0, 100\]/],
    [{ ...muon, step: 0 }, /^muon: step must be >= 1/],
  ];
  for (const [o, msg] of bad) assert.throws(() => sae.apply(o), (e: any) => e.code === 'ERR_SPARSIFY_VALUE' && msg.test(e.message), String(msg));
  await sae.apply(muon);
  // A method on another object is an error (the class's receiver check), not a crash.
  assert.throws(() => (sae.read as any).call({}, {}), TypeError);
  sae.dispose();
  assert.throws(() => sae.takeFired(), { code: 'ERR_SPARSIFY_DISPOSED' });
});
