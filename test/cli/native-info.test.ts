/** `sparsify info --native` reports the addon and the GEMM kernels; a SPARSIFY_GEMM the CPU cannot run is a usage error. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { gemmAvailableKernels, gemmBf16Path, gemmForceKernels, gemmInfo, nativePath } from '@sparsify/core';
import { main } from '@sparsify/cli';

function capture() {
  const o = { out: '', err: '' };
  return { o, io: { stdout: { write: (s: string) => (o.out += s) }, stderr: { write: (s: string) => (o.err += s) } } };
}

test('sparsify info --native names the addon, the kernel set in use, its blocking and the alternatives', async () => {
  gemmForceKernels('auto');
  const c = capture();
  assert.equal(await main(['info', '--native'], c.io), 0, c.o.err);
  const g = gemmInfo();
  assert.ok(c.o.out.includes(`addon:        ${nativePath()}`), c.o.out);
  assert.match(c.o.out, new RegExp(`^gemm kernels: ${g.kernels} \\(tile ${g.mr}x${g.nr}; MC ${g.mc}, KC ${g.kc}, NC ${g.nc}; L1d `, 'm'));
  assert.match(c.o.out, new RegExp(`^available:    ${gemmAvailableKernels().join(', ')} `, 'm'));
  assert.match(c.o.out, new RegExp(`^bf16 gemm:    ${gemmBf16Path()} \\(--compute_dtype bf16\\)$`, 'm'));
  assert.match(gemmBf16Path(), /^(avx512_bf16|widen-(avx512|avx2|portable))$/);
  const bad = capture();
  assert.equal(await main(['info', '--native', 'extra'], bad.io), 2);
  assert.match(bad.o.err, /info --native: takes no other arguments/);
});

// Runs the CLI in a child with SPARSIFY_GEMM set (the variable is read once per process).
function cliWithGemm(value: string) {
  const code = `import { main } from '@sparsify/cli'; process.exitCode = await main(['info', '--native']);`;
  return spawnSync(process.execPath, ['--conditions=sparsify-source', '--import', 'tsx', '--input-type=module', '-e', code], {
    env: { ...process.env, SPARSIFY_GEMM: value },
    encoding: 'utf8',
    timeout: 120_000,
  });
}

test('SPARSIFY_GEMM: a kernel set the CPU runs is reported; an unknown or unsupported one exits 2 with a message', () => {
  const available = gemmAvailableKernels();
  const forced = cliWithGemm(available[available.length - 1]);
  assert.equal(forced.status, 0, forced.stderr);
  assert.match(forced.stdout, /^gemm kernels: portable \(tile 6x16;/m);
  assert.match(forced.stdout, /^bf16 gemm:    widen-portable /m);
  for (const value of ['fastest', ...['avx512', 'avx2'].filter((k) => !available.includes(k))]) {
    const r = cliWithGemm(value);
    assert.equal(r.status, 2, `${value}: ${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^sparsify: error: SPARSIFY_GEMM=${value}: `, 'm'));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});
