/** Native helpers the trainer uses between the model forward and the coder step (train_ops.cpp). */
import { native, Tensor } from '@sparsify/core';

/** Rows `idx` (a host int32 tensor) of x [N,D]: a new tensor on x's device, computed off the event loop. */
export async function gatherRows(x: Tensor, idx: Tensor): Promise<Tensor> {
  if (x.device === 'cuda') return new Tensor(await native().cudaGatherRows(x.handle, idx.handle));
  return new Tensor(await native().trainGatherRows(x.handle, idx.handle));
}

/** Rows [begin, end) of x, sharing x's memory. */
export function rowSlice(x: Tensor, begin: number, end: number): Tensor {
  return new Tensor(native().trainRowSlice(x.handle, begin, end));
}

/** sum over rows and columns of (y - column mean)^2, accumulated in float64. */
export async function totalVariance(y: Tensor): Promise<number> {
  return native().trainTotalVariance(y.handle);
}
