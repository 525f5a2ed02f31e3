/**
 * Checks the trainer makes before it allocates or trains, each naming the flag or field at
 * fault (ConfigError: exit code 2 in the CLI), and the context added to errors of a step.
 */
import { checkCoderSize, ConfigError, formatBytes, MAX_TENSOR_ELEMENTS, numLatentsOf, SparsifyError, ValueError, type SparseCoderConfig } from '@sparsify/core';
import { totalmem } from 'node:os';

/** A dataset needs a whole, positive length and ctxLen and a rows() method. */
export function checkDatasetShape(dataset: { length: unknown; ctxLen: unknown; rows: unknown } | undefined): void {
  if (!dataset || typeof dataset.rows !== 'function') throw new ValueError('Trainer: dataset must have a length, a ctxLen and rows(indices)');
  const { length, ctxLen } = dataset;
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0)
    throw new ValueError(`Trainer: dataset.length must be a non-negative integer, got ${String(length)}`);
  if (length < 1) throw new ValueError('Trainer: the dataset is empty');
  if (typeof ctxLen !== 'number' || !Number.isSafeInteger(ctxLen) || ctxLen < 1)
    throw new ValueError(`Trainer: dataset.ctxLen must be a positive integer, got ${String(ctxLen)}`);
}

/** Token ids to exclude must be ids of the model's vocabulary. */
export function checkExcludeTokens(ids: readonly number[], vocabSize: number | undefined): void {
  for (const id of ids) {
    if (id < 0) throw new ConfigError(`--exclude_tokens: ${id} is not a token id (ids are >= 0)`);
    if (vocabSize !== undefined && id >= vocabSize) throw new ConfigError(`--exclude_tokens: ${id} is not a token id of this model (vocabulary size ${vocabSize})`);
  }
}

/** The coder of a hookpoint fits (k <= latents, sizes within limits), checked before allocating. */
export function checkSizes(sae: SparseCoderConfig, hook: string, width: number): void {
  const M = numLatentsOf(sae, width);
  const flag = sae.numLatents ? '--num_latents' : '--expansion_factor';
  try {
    for (const w of sae.matryoshkaPrefixes) if (w > M) throw new ConfigError(`--matryoshka_prefixes ${w} is more than the ${M} latents of the coder at '${hook}'`);
    checkCoderSize({ numLatents: M, dIn: width, skipConnection: sae.skipConnection }, `${flag} ${sae.numLatents || sae.expansionFactor} at '${hook}'`);
  } catch (e) {
    if (e instanceof ValueError) throw new ConfigError(e.message);
    throw e;
  }
  if (sae.activation !== 'relu' && sae.activation !== 'jumprelu' && sae.k > M) throw new ConfigError(`-k ${sae.k} is more than the ${M} latents of the coder at '${hook}' (${flag} ${sae.numLatents || sae.expansionFactor}, d_in ${width})`);
}

/**
 * batchtopk keeps floor(k · rows) latents of each micro-batch: with a float k below 1 a micro-batch
 * can be too small to keep any (checked before training; steps whose rows shrink below that, say by
 * --exclude_tokens, are refused by the step itself).
 */
export function checkBatchTopKRows(sae: SparseCoderConfig, batchSize: number, ctxLen: number, microAccSteps: number): void {
  if (sae.activation !== 'batchtopk') return;
  const tokens = batchSize * ctxLen;
  const rows = Math.floor(tokens / Math.min(microAccSteps, tokens));
  if (Math.floor(sae.k * rows) < 1)
    throw new ConfigError(`-k ${sae.k}: batchtopk keeps floor(k · rows) latents per step, and a micro-batch of ${rows} rows (--batch_size ${batchSize} x --ctx_len ${ctxLen} / --micro_acc_steps ${microAccSteps}) keeps none; use a larger -k or larger batches`);
}

/** Errors of one coder's step name the hookpoint (a NaN in its activations, say). */
export async function withHookpointContext<T>(name: string, fn: () => Promise<T>, model?: string): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof SparsifyError && !e.message.startsWith('hookpoint ')) e.message = `hookpoint '${name}'${model ? ` of ${model}` : ''}: ${e.message}`;
    throw e;
  }
}

/** One batch's tokens and captured activations must fit (checked before the first batch is read). */
export function checkBatchSize(batchSize: number, ctxLen: number, widths: readonly number[]): void {
  const tokens = batchSize * ctxLen;
  if (tokens > MAX_TENSOR_ELEMENTS)
    throw new ConfigError(`--batch_size ${batchSize} x --ctx_len ${ctxLen} = ${tokens} tokens per batch, more than the limit of ${MAX_TENSOR_ELEMENTS}`);
  const bytes = widths.reduce((a, w) => a + 4 * tokens * w, 0);
  if (bytes > totalmem())
    throw new ConfigError(`--batch_size ${batchSize} x --ctx_len ${ctxLen}: one batch's activations need ${formatBytes(bytes)}, more than this machine's ${formatBytes(totalmem())}; use a smaller --batch_size`);
}
