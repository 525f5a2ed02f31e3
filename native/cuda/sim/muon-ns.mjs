// Numerics check (no GPU needed): muon.cu's Newton–Schulz as sequential code — the same operand
// layouts (X·Xᵀ with both operands X [r, pad32(c)], A·A with the right operand Aᵀ, B·X with the
// right operand Xᵀ [c, pad32(r)], i.e. gemm.cu's C = A·Bᵀ contract), bf16 (round-to-nearest-even)
// operands, f32 element-wise steps — against the CPU kernel's f32 iteration (cpu/optim.cpp
// newton_schulz), on random gradients of the shapes the GPU tests use. It prints how far the bf16
// result is from the f32 one (the tolerance of test/cuda/coder.test.ts "cuda muon" comes from
// here) and requires (1) the padded-operand products to equal unpadded ones, (2) the bf16 gap to
// stay under that tolerance and (3) a wrong step count to be far outside it (the check can see a bug).
// Usage: node native/cuda/sim/muon-ns.mjs   (exit 0 when all hold)
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
const fr = Math.fround;
function bf16(v) {
  f32[0] = v;
  const u = u32[0];
  if ((u & 0x7f800000) === 0x7f800000) return v;
  u32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0;
  return f32[0];
}
const pad32 = (k) => Math.ceil(k / 32) * 32;
// Operand [rows, K] zero-padded to Kp, rounded (convert_pad) or, from src [K, N], transposed (transpose_convert).
function convertPad(src, rows, K, Kp, rnd) {
  const o = new Float32Array(rows * Kp);
  for (let i = 0; i < rows; i++) for (let k = 0; k < K; k++) o[i * Kp + k] = rnd(src[i * K + k]);
  return o;
}
function transposeConvert(src, K, N, Kp, rnd) {
  const o = new Float32Array(N * Kp);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) o[n * Kp + k] = rnd(src[k * N + n]);
  return o;
}
// C[M, N] = A[M, Kp] · B[N, Kp]ᵀ, f32 accumulation (the order inside a tile does not matter here).
function gemm(A, B, M, N, Kp) {
  const C = new Float32Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let acc = 0;
      for (let k = 0; k < Kp; k++) acc = fr(acc + fr(A[i * Kp + k] * B[j * Kp + k]));
      C[i * N + j] = acc;
    }
  return C;
}
// X [r, c] normalised in place, then `steps` quintic iterations with operands rounded by `rnd`.
function newtonSchulz(G, rows, cols, steps, rnd) {
  const tr = rows > cols, r = tr ? cols : rows, c = tr ? rows : cols;
  let X = new Float32Array(r * c);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) X[tr ? j * c + i : i * cols + j] = G[i * cols + j];
  let ss = 0;
  for (const v of X) ss += v * v;
  const inv = fr(1 / (Math.sqrt(ss) + 1e-7));
  X = X.map((v) => fr(v * inv));
  const a = fr(3.4445), b = fr(-4.775), cc = fr(2.0315), Kc = pad32(c), Kr = pad32(r);
  for (let it = 0; it < steps; it++) {
    const Xh = convertPad(X, r, c, Kc, rnd);
    const A = gemm(Xh, Xh, r, r, Kc);
    const AA = gemm(convertPad(A, r, r, Kr, rnd), transposeConvert(A, r, r, Kr, rnd), r, r, Kr);
    const B = A.map((v, i) => fr(fr(b * v) + fr(cc * AA[i])));
    const T = gemm(convertPad(B, r, r, Kr, rnd), transposeConvert(X, r, c, Kr, rnd), r, c, Kr);
    X = X.map((v, i) => fr(fr(a * v) + T[i]));
  }
  const O = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) O[i * cols + j] = X[tr ? j * c + i : i * cols + j];
  return O;
}
// The CPU kernel (cpu/optim.cpp newton_schulz): f32, its own layouts (A = X·Xᵀ, AA = A·A,
// T = A·X as plain row-major loops), no padding, no transposed operands.
function newtonSchulzCpu(G, rows, cols, steps) {
  const tr = rows > cols, r = tr ? cols : rows, c = tr ? rows : cols;
  let X = new Float32Array(r * c);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) X[tr ? j * c + i : i * cols + j] = G[i * cols + j];
  let ss = 0;
  for (const v of X) ss += v * v;
  const inv = fr(1 / (Math.sqrt(ss) + 1e-7));
  X = X.map((v) => fr(v * inv));
  const a = fr(3.4445), b = fr(-4.775), cc = fr(2.0315);
  const mm = (P, Q, n, m, k, qT) => {
    // P [n, k] · (qT ? Q [m, k]ᵀ : Q [k, m])
    const C = new Float32Array(n * m);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < m; j++) {
        let acc = 0;
        for (let t = 0; t < k; t++) acc = fr(acc + fr(P[i * k + t] * (qT ? Q[j * k + t] : Q[t * m + j])));
        C[i * m + j] = acc;
      }
    return C;
  };
  for (let it = 0; it < steps; it++) {
    const A = mm(X, X, r, r, c, true);
    const AA = mm(A, A, r, r, r, false);
    const B = A.map((v, i) => fr(fr(b * v) + fr(cc * AA[i])));
    const T = mm(B, X, r, c, r, false);
    X = X.map((v, i) => fr(fr(a * v) + T[i]));
  }
  const O = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) O[i * cols + j] = X[tr ? j * c + i : i * cols + j];
  return O;
}
const rms = (a, b) => {
  let n = 0, d = 0;
  for (let i = 0; i < a.length; i++) (n += (a[i] - b[i]) ** 2), (d += b[i] ** 2);
  return Math.sqrt(n / d);
};
const maxRel = (a, b) => {
  let n = 0, d = 0;
  for (let i = 0; i < a.length; i++) (n = Math.max(n, Math.abs(a[i] - b[i]))), (d = Math.max(d, Math.abs(b[i])));
  return n / d;
};
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
let ok = true;
for (const [rows, cols, sparse] of [[256, 64, false], [256, 64, true], [40, 72, false], [40, 72, true]]) {
  const G = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const live = !sparse || rand() < -0.6; // sparse: ~20% of the rows (latents that fired)
    for (let j = 0; j < cols; j++) G[i * cols + j] = live ? rand() + rand() + rand() : 0;
  }
  const ref = newtonSchulzCpu(G, rows, cols, 5);
  // (1) the device layouts with f32 operands give the CPU's result bit for bit (padding adds exact zeros).
  const padF32 = newtonSchulz(G, rows, cols, 5, (v) => v);
  const padOk = padF32.every((v, i) => v === ref[i]);
  const dev = newtonSchulz(G, rows, cols, 5, bf16);
  const wrong = newtonSchulz(G, rows, cols, 4, bf16);
  const [r1, m1, r2] = [rms(dev, ref), maxRel(dev, ref), rms(wrong, ref)];
  const pass = padOk && r1 < 0.1 && m1 < 0.15 && r2 > 0.2;
  ok &&= pass;
  console.log(`${rows}x${cols}${sparse ? ' sparse' : ''}: bf16 vs f32 RMS ${r1.toFixed(4)}, max ${m1.toFixed(4)}; 4 steps: RMS ${r2.toFixed(3)}; padded == plain: ${padOk} ${pass ? 'ok' : 'FAIL'}`);
}
process.exit(ok ? 0 : 1);
