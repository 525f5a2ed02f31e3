export * from './metrics.js';
export * from './evaluate.js';
export { executionOrder, hookOfCoder } from './hook-order.js';
export * from './training-eval.js';
