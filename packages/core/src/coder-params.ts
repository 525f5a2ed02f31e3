/**
 * The parameters of a sparse coder, in sparsify's safetensors names and order, with their
 * shapes and the keys the native resident state uses for them. Every list of coder parameters
 * in the library is this one.
 */
import type { SparseCoderConfig } from './config.js';

export const CODER_PARAM_NAMES = ['encoder.weight', 'encoder.bias', 'W_dec', 'b_dec', 'W_skip', 'log_threshold', 'topk_threshold'] as const;
export type CoderParamName = (typeof CODER_PARAM_NAMES)[number];

/** The parameters the native resident states hold (topk_threshold is a buffer, not trained; log_threshold: jumprelu, on both devices). */
export type NativeCoderParamName = Exclude<CoderParamName, 'topk_threshold'>;

/** The native state's key of each parameter (cudaSaeCreate / Read / LoadState; its slot order is CODER_PARAM_NAMES'). */
export const NATIVE_PARAM_KEYS = { 'encoder.weight': 'wEnc', 'encoder.bias': 'bEnc', W_dec: 'wDec', b_dec: 'bDec', W_skip: 'wSkip', log_threshold: 'logThreshold' } as const satisfies Record<NativeCoderParamName, string>;
export type NativeParamKey = (typeof NATIVE_PARAM_KEYS)[NativeCoderParamName];

/**
 * The parameters a coder with `dIn` inputs and `numLatents` latents has, with their shapes:
 * W_dec only with a decoder, W_skip only with skip_connection, log_threshold [M] (trained) for
 * jumprelu, topk_threshold [1] (the running inference threshold, not trained) for batchtopk.
 */
export function coderParamShapes(
  cfg: Pick<SparseCoderConfig, 'skipConnection'> & Partial<Pick<SparseCoderConfig, 'activation'>>,
  dIn: number,
  numLatents: number,
  opts: { decoder?: boolean } = {},
): Map<CoderParamName, number[]> {
  const out = new Map<CoderParamName, number[]>([
    ['encoder.weight', [numLatents, dIn]],
    ['encoder.bias', [numLatents]],
  ]);
  if (opts.decoder ?? true) out.set('W_dec', [numLatents, dIn]);
  out.set('b_dec', [dIn]);
  if (cfg.skipConnection) out.set('W_skip', [dIn, dIn]);
  if (cfg.activation === 'jumprelu') out.set('log_threshold', [numLatents]);
  if (cfg.activation === 'batchtopk') out.set('topk_threshold', [1]);
  return out;
}
