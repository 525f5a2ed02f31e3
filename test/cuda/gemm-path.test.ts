// Which dense GEMM kernel the device runs. On compute capability 9.0 the wgmma kernel (not yet run
// on a GPU) must pass its self-check against the mma.sync kernel; a failure falls
// back at run time but fails here, so it cannot go unnoticed. The cudaMatmul parity tests in
// parity.test.ts then exercise whichever path was chosen against the CPU reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { cudaAddon } from './cuda-env.js';

const { addon, skip } = cudaAddon();

test('dense GEMM path: wgmma on sm_90 after its self-check, mma.sync elsewhere', { skip: skip ?? false }, () => {
  const probe = addon!.cudaProbe();
  const path = addon!.testing.cudaGemmPath() as { wgmma: boolean; why: string };
  assert.equal(typeof path.why, 'string');
  if (process.env.SPARSIFY_CUDA_GEMM === 'mma') {
    assert.equal(path.wgmma, false);
  } else if (probe.computeCapability === '9.0') {
    assert.equal(path.wgmma, true, `wgmma was not chosen on ${probe.name}: ${path.why}`);
  } else {
    assert.equal(path.wgmma, false, path.why);
  }
});
