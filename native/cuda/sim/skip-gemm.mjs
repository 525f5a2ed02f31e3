// Index-math check (no GPU needed): re-implements in JS the index math of sae_state.cu's
// gemm_f32_acc_kernel (W_skip's products), phase by phase between its barriers, and checks both
// call patterns against plain loops on ragged shapes: the forward out += x·W_skipᵀ (operands
// contiguous along r) and the gradient g += Gᵀ·x (contiguous along i / j, the other load order).
// Shared tiles start as NaN, so a tile hole shows up as a NaN in the result; a global read past an
// operand throws. Usage: node native/cuda/sim/skip-gemm.mjs
const T = 32, ROWS = 8;

function kernel(A, ai, ar, B, bj, br, C, ldc, I, J, R) {
  const at = (arr, p) => {
    if (!(p >= 0 && p < arr.length)) throw new Error(`global read out of bounds: ${p} of ${arr.length}`);
    return arr[p];
  };
  for (let bx = 0; bx < Math.ceil(I / T); bx++)
    for (let by = 0; by < Math.ceil(J / T); by++) {
      const i0 = bx * T, j0 = by * T;
      const acc = Array.from({ length: ROWS * T }, () => new Float64Array(T / ROWS));
      for (let r0 = 0; r0 < R; r0 += T) {
        const As = Array.from({ length: T }, () => new Float64Array(T + 1).fill(NaN));
        const Bs = Array.from({ length: T }, () => new Float64Array(T + 1).fill(NaN));
        for (let ty = 0; ty < ROWS; ty++)
          for (let tx = 0; tx < T; tx++)
            for (let q = ty; q < T; q += ROWS) {
              if (ai === 1) { const i = i0 + tx, r = r0 + q; As[tx][q] = i < I && r < R ? at(A, i + r * ar) : 0; }
              else { const i = i0 + q, r = r0 + tx; As[q][tx] = i < I && r < R ? at(A, i * ai + r * ar) : 0; }
              if (bj === 1) { const j = j0 + tx, r = r0 + q; Bs[tx][q] = j < J && r < R ? at(B, j + r * br) : 0; }
              else { const j = j0 + q, r = r0 + tx; Bs[q][tx] = j < J && r < R ? at(B, j * bj + r * br) : 0; }
            }
        // __syncthreads()
        for (let ty = 0; ty < ROWS; ty++)
          for (let tx = 0; tx < T; tx++)
            for (let rr = 0; rr < T; rr++) {
              const b = Bs[tx][rr];
              for (let u = 0; u < T / ROWS; u++) acc[ty * T + tx][u] += As[ty + ROWS * u][rr] * b;
            }
        // __syncthreads()
      }
      for (let ty = 0; ty < ROWS; ty++)
        for (let tx = 0; tx < T; tx++)
          for (let u = 0; u < T / ROWS; u++) {
            const i = i0 + ty + ROWS * u, j = j0 + tx;
            if (i < I && j < J) C[i * ldc + j] += acc[ty * T + tx][u];
          }
    }
}

const rnd = (n) => Float64Array.from({ length: n }, () => Math.round(Math.random() * 8 - 4));
let fails = 0;
for (const [N, D] of [[37, 5], [3, 40], [70, 33], [1, 1], [64, 64], [33, 31]]) {
  const x = rnd(N * D), W = rnd(D * D), G = rnd(N * D);
  const out = rnd(N * D), want = Float64Array.from(out);
  for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) for (let e = 0; e < D; e++) want[n * D + d] += x[n * D + e] * W[d * D + e];
  kernel(x, D, 1, W, D, 1, out, D, N, D, D);  // as sae_forward_backward's forward call
  const g = rnd(D * D), wantG = Float64Array.from(g);
  for (let d = 0; d < D; d++) for (let e = 0; e < D; e++) for (let n = 0; n < N; n++) wantG[d * D + e] += G[n * D + d] * x[n * D + e];
  kernel(G, 1, D, x, 1, D, g, D, D, D, N);  // as its W_skip gradient call
  const bad = (a, b) => a.some((v, i) => !(v === b[i]));  // small integers: exact in f64
  if (bad(out, want) || bad(g, wantG)) { fails++; console.log(`mismatch at N=${N} D=${D}`); }
}
console.log(fails ? `${fails} shape(s) FAILED` : 'gemm_f32_acc index math: forward and gradient patterns exact on all shapes');
process.exit(fails ? 1 : 0);
