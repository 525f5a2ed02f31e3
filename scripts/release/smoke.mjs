// Runs in a folder where the packed tarballs are installed (scripts/release-check.mjs copies it
// there): the packaging test's encode, then three training steps through the public API.
// Prints one JSON line; the release check compares it across x64 and arm64.
import { SparseCoder, Tensor, createOptimizer, native, nativePath } from '@sparsify/core';

const coder = await SparseCoder.create(16, { expansionFactor: 4, k: 3 }, { seed: 7 });
const x = Tensor.from(Float32Array.from({ length: 5 * 16 }, (_, i) => Math.sin(i * 0.37) * 2), [5, 16]);
const first = await coder.encode(x);
const encode = { acts: [...first.topActs.toFloat32Array()], indices: [...first.topIndices.toInt32Array()] };

const batch = Tensor.from(Float32Array.from({ length: 64 * 16 }, (_, i) => Math.cos(i * 0.11) + Math.sin(i * 0.029)), [64, 16]);
const opt = createOptimizer('adam', [coder], { lr: 1e-2 });
const losses = [];
for (let step = 0; step < 3; step++) {
  const l = await coder.forwardBackward(batch, { auxkAlpha: 1 / 32 });
  losses.push(l.loss);
  await opt.step();
}
const after = await coder.encode(x);
const trained = { acts: [...after.topActs.toFloat32Array()], indices: [...after.topIndices.toInt32Array()] };
const info = native().buildInfo();
console.log(JSON.stringify({ path: nativePath(), cuda: Boolean(info.cuda), encode, losses, trained }));
