// The native error kinds and the JS error classes agree: every kind is raised as the class of
// its name, with that class's code, also by an addon used without the classes registered.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as core from '@sparsify/core';
import { native, SparsifyError, Tensor, ValueError } from '@sparsify/core';

test('every native error kind names a SparsifyError class whose code is the native code', () => {
  const kinds = native().testing.errorKinds() as { jsClass: string; code: string }[];
  assert.ok(kinds.length >= 7);
  for (const { jsClass, code } of kinds) {
    const C = (core as unknown as Record<string, new (m: string) => SparsifyError>)[jsClass];
    assert.equal(typeof C, 'function', `${jsClass} is exported by @sparsify/core`);
    const e = new C('x');
    assert.ok(e instanceof SparsifyError, jsClass);
    assert.equal(e.code, code, jsClass);
  }
});

test('a native error arrives as the registered class with its code', async () => {
  const t = Tensor.from(new Float32Array(4), [2, 2]);
  await assert.rejects(async () => native().trainGatherRows(t.handle, Tensor.from(Int32Array.from([5]), [1]).handle), (e: Error) => {
    assert.ok(e instanceof ValueError);
    assert.equal((e as ValueError).code, 'ERR_SPARSIFY_VALUE');
    return true;
  });
});
