// The dead-latent counters a coder's native state keeps, checked step by step against the plain
// TS reference (test/train/dead-latent-reference.ts) on a device: counts, number dead, and the
// AuxK loss of a deadFromCounters step equal to that of the reference's explicit dead mask.
import assert from 'node:assert/strict';

import { SparseCoder, Tensor, type Device } from '@sparsify/core';

import { DeadLatentCounter } from '../train/dead-latent-reference.ts';

/** Deterministic normal-ish values (sum of uniforms), so the check needs no other helper. */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return Float32Array.from({ length: n }, () => u() + u() + u() - 1.5);
}

export async function checkDeadLatentCounters(device: Device, auxkTolerance: number): Promise<void> {
  const D = 16, M = 128, N = 24, k = 2, threshold = 40;
  const coder = await SparseCoder.create(D, { numLatents: M, k }, { seed: 3, device });
  try {
    const ref = new DeadLatentCounter(M, threshold);
    await coder.loadDeadLatents(threshold);
    await coder.takeFiredLatents();
    for (let step = 0; step < 6; step++) {
      const x = Tensor.from(values(N * D, 100 + step), [N, D]);
      const xd = device === 'cpu' ? x : await x.to(device);
      try {
        // AuxK from the state's counters equals AuxK from the reference's mask (before this step's update).
        const dead = ref.deadMask();
        const a = await coder.forward(xd, { deadMask: dead });
        const b = await coder.forwardBackward(xd, { auxkAlpha: 1 / 32, deadFromCounters: true, trackFired: true, rows: [0, N / 2], batchVariance: true });
        const c = await coder.forwardBackward(xd, { auxkAlpha: 1 / 32, deadFromCounters: true, trackFired: true, rows: [N / 2, N], batchVariance: true });
        if (ref.numDead() === 0) assert.equal(b.auxkLoss + c.auxkLoss, 0, `step ${step}: no dead latents, no AuxK`);
        else assert.ok(b.auxkLoss > 0 && c.auxkLoss > 0, `step ${step}: ${ref.numDead()} dead latents give an AuxK loss`);
        const e = await coder.forwardBackward(xd, { auxkAlpha: 1 / 32, deadMask: dead, rows: [0, N / 2], batchVariance: true });
        assert.ok(Math.abs(e.auxkLoss - b.auxkLoss) <= auxkTolerance * Math.max(1e-12, Math.abs(e.auxkLoss)), `step ${step}: auxk ${b.auxkLoss} vs ${e.auxkLoss}`);
        // The reference's fired set: the latents the forward selects for these rows.
        const fired = new Int32Array(M);
        for (const i of a.latentIndices.toInt32Array()) fired[i] = 1;
        a.saeOut.dispose();
        a.latentActs.dispose();
        a.latentIndices.dispose();
        ref.update(N, fired);
        const numDead = await coder.updateDeadLatents(N);
        assert.equal(numDead, ref.numDead(), `step ${step}: number dead`);
        assert.deepEqual([...(await coder.readDeadLatents())], [...ref.counts], `step ${step}: counters`);
      } finally {
        if (xd !== x) xd.dispose();
        x.dispose();
      }
      coder.zeroGrad();
    }
    assert.ok(ref.numDead() > 0 && ref.numDead() < M, `the check saw dead and live latents (${ref.numDead()} dead)`);
    // Checkpoint round trip: exact beyond 2^31 tokens; the mask follows the loaded counters.
    const counts = Float64Array.from({ length: M }, (_, i) => (i % 3 === 0 ? 2 ** 40 + i : i));
    await coder.loadDeadLatents(2 ** 39, counts);
    assert.deepEqual([...(await coder.readDeadLatents())], [...counts]);
    await coder.takeFiredLatents();
    assert.equal(await coder.updateDeadLatents(5), counts.filter((c) => c + 5 > 2 ** 39).length);
    assert.equal((await coder.readDeadLatents())[3], 2 ** 40 + 3 + 5);
    await assert.rejects(coder.loadDeadLatents(1, new Float64Array(M - 1)), /counters/);
  } finally {
    coder.dispose();
  }
}
