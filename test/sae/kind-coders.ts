// Random SAELens-kind coders for the kind suites: every parameter drawn (so every path of each kind
// is exercised), a jumprelu log_threshold around log 0.4, a batchtopk threshold of 0.25.
import { mulberry32, SparseCoder, sparseCoderConfig, Tensor, type SparseCoderConfig } from '@sparsify/core';

/** n normal draws (Box–Muller) of standard deviation s. */
export function gauss(rng: () => number, n: number, s = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = s * Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  return out;
}

/** A coder of M latents over D inputs with config `cfg`, and a batch x [N, D], from `seed`. */
export async function randomKindCoder(cfg: Partial<SparseCoderConfig>, shape: { N: number; D: number; M: number }, seed: number): Promise<{ coder: SparseCoder; x: Tensor }> {
  const { N, D, M } = shape;
  const rng = mulberry32(seed);
  const full = sparseCoderConfig({ numLatents: M, ...cfg });
  const t = new Map<string, Tensor>([
    ['encoder.weight', Tensor.from(gauss(rng, M * D, 0.5), [M, D])],
    ['encoder.bias', Tensor.from(gauss(rng, M, 0.3), [M])],
    ['W_dec', Tensor.from(gauss(rng, M * D, 0.4), [M, D])],
    ['b_dec', Tensor.from(gauss(rng, D, 0.2), [D])],
  ]);
  if (full.activation === 'jumprelu') t.set('log_threshold', Tensor.from(gauss(rng, M, 0.3).map((v) => Math.log(0.4) + v), [M]));
  if (full.activation === 'batchtopk') t.set('topk_threshold', Tensor.from(new Float32Array([0.25]), [1]));
  const coder = await SparseCoder.fromParams(full, D, t);
  const x = Tensor.from(gauss(rng, N * D), [N, D]);
  return { coder, x };
}
