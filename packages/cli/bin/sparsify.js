#!/usr/bin/env node
import { main } from '../dist/cli.js';
// A reader that stops early (`sparsify hookpoints ... | head`) ends the output, not the process
// with a stack trace: EPIPE on stdout exits quietly, as Unix tools do.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});
process.exitCode = await main(process.argv.slice(2));
