// The CUDA state's dead-latent counters (on the device) equal the TS reference step by step
// (test/sae/dead-latents-check.ts); AuxK takes its mask from them. Skipped without a GPU.
import { test } from 'node:test';

import { checkDeadLatentCounters } from '../sae/dead-latents-check.ts';
import { cudaAddon } from './cuda-env.js';

const { skip } = cudaAddon();

test('dead-latent counters in the CUDA coder state: equal to the reference; AuxK from them; checkpoint round trip', { skip: skip ?? false }, async () => {
  // The same dead set either way; the AuxK losses agree to f32 reduction order.
  await checkDeadLatentCounters('cuda', 1e-5);
});
