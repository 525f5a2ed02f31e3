// The CPU state's dead-latent counters equal the TS reference step by step (test/sae/dead-latents-check.ts).
import { test } from 'node:test';

import { checkDeadLatentCounters } from './dead-latents-check.ts';

test('dead-latent counters in the CPU coder state: equal to the reference; AuxK from them; checkpoint round trip', async () => {
  await checkDeadLatentCounters('cpu', 0);
});
