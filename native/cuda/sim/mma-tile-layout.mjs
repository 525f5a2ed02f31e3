// Layout check (no GPU needed): re-implements in JS the index math of mma_tile.cuh (cp.async
// stores into the swizzled tile, ldmatrix.x4 addresses, m16n8k16 fragment layouts per the PTX ISA,
// accumulator -> (row, col) mapping used by the epilogues) and checks a CTA tile product exactly,
// plus ldmatrix bank-conflict freedom. Usage: node native/cuda/sim/mma-tile-layout.mjs [64|128]
// Also checked: edge tiles (rows past rows_a / rows_b zero-filled from NaN-poisoned global
// memory, K not a multiple of 32 zero-padded to Kp, a tile at a nonzero (m0, n0)) and a model of
// the cp.async group accounting of the STAGES-deep pipeline (slice kt landed before it is read, no
// stage overwritten while a warp may still read it) for STAGES 2..5 and KT 0..12.
const BM = +process.argv[2] || 128, BN = 128, ROW = 64;
const swz = (r, c) => r * ROW + ((c ^ ((r >> 1) & 3)) << 4);
function tileErrors(rowsA, rowsB, K, m0, n0) {
const Kp = Math.ceil(K / 32) * 32;
// Global operands [rows, Kp], zero-padded past K (as convert_pad writes them); reading a row past
// the end would bring a NaN in (the kernel must zero-fill those rows without reading them).
const mk = (rows) => Array.from({ length: rows * Kp }, (_, i) => (i % Kp < K ? Math.round(Math.random() * 8 - 4) : 0));
const A = mk(rowsA), B = mk(rowsB);
const gA = (r, k) => (r < rowsA ? A[r * Kp + k] : NaN), gB = (r, k) => (r < rowsB ? B[r * Kp + k] : NaN);
const acc = Array.from({ length: 256 }, () => Array.from({ length: BM / 32 }, () => Array.from({ length: 4 }, () => [0, 0, 0, 0])));
for (let kt = 0; kt < Kp / 32; kt++) {
  const sm = new Array((BM + BN) * 32).fill(NaN); // halves
  for (let t = 0; t < 256; t++) {
    for (let i = 0; i < BM * 4 / 256; i++) { const c = t + i * 256, r = c >> 2, ch = c & 3, ok = m0 + r < rowsA; for (let e = 0; e < 8; e++) sm[swz(r, ch) / 2 + e] = ok ? gA(m0 + r, kt * 32 + ch * 8 + e) : 0; }
    for (let i = 0; i < BN * 4 / 256; i++) { const c = t + i * 256, r = c >> 2, ch = c & 3, ok = n0 + r < rowsB; for (let e = 0; e < 8; e++) sm[(BM * ROW + swz(r, ch)) / 2 + e] = ok ? gB(n0 + r, kt * 32 + ch * 8 + e) : 0; }
  }
  if (sm.some(Number.isNaN)) throw new Error('hole in smem');
  for (let warp = 0; warp < 8; warp++) {
    const wm = warp >> 2, wn = warp & 3;
    for (let ks = 0; ks < 2; ks++) {
      // ldmatrix: addrs per lane -> each lane gets 4 regs of 2 halves
      const ldm = (addrs) => { const out = []; for (let t = 0; t < 32; t++) { const regs = []; for (let q = 0; q < 4; q++) { const a = addrs[8 * q + (t >> 2)] / 2; regs.push([sm[a + 2 * (t & 3)], sm[a + 2 * (t & 3) + 1]]); } out.push(regs); } return out; };
      const af = [], bf = [];
      for (let mi = 0; mi < BM / 32; mi++) af.push(ldm(Array.from({ length: 32 }, (_, l) => swz(wm * (BM / 2) + mi * 16 + (l & 15), ks * 2 + (l >> 4)))));
      for (let nj = 0; nj < 2; nj++) bf.push(ldm(Array.from({ length: 32 }, (_, l) => BM * ROW + swz(wn * 32 + nj * 16 + (l & 7) + ((l >> 4) << 3), ks * 2 + ((l >> 3) & 1)))));
      for (let mi = 0; mi < BM / 32; mi++) for (let ni = 0; ni < 4; ni++) {
        // rebuild the 16x16 A and 16x8 B (k x n) from fragments per the PTX layouts
        const At = Array.from({ length: 16 }, () => new Array(16)), Bt = Array.from({ length: 16 }, () => new Array(8));
        for (let l = 0; l < 32; l++) {
          const g = l >> 2, c = l & 3, a = af[mi][l];
          [[g, 0], [g + 8, 0], [g, 8], [g + 8, 8]].forEach(([r, k0], q) => { At[r][k0 + 2 * c] = a[q][0]; At[r][k0 + 2 * c + 1] = a[q][1]; });
          const b = bf[ni >> 1][l], b0 = b[(ni & 1) * 2], b1 = b[(ni & 1) * 2 + 1];
          Bt[2 * c][g] = b0[0]; Bt[2 * c + 1][g] = b0[1]; Bt[2 * c + 8][g] = b1[0]; Bt[2 * c + 9][g] = b1[1];
        }
        for (let l = 0; l < 32; l++) {
          const g = l >> 2, c = l & 3, d = acc[warp * 32 + l][mi][ni];
          const dot = (r, n) => { let s = 0; for (let k = 0; k < 16; k++) s += At[r][k] * Bt[k][n]; return s; };
          d[0] += dot(g, 2 * c); d[1] += dot(g, 2 * c + 1); d[2] += dot(g + 8, 2 * c); d[3] += dot(g + 8, 2 * c + 1);
        }
      }
    }
  }
}
let bad = 0;
for (let t = 0; t < 256; t++) {
  const lane = t & 31, warp = t >> 5, wm = warp >> 2, wn = warp & 3;
  for (let mi = 0; mi < BM / 32; mi++) for (let ni = 0; ni < 4; ni++) for (let e = 0; e < 4; e++) {
    const r = m0 + wm * (BM / 2) + mi * 16 + (lane >> 2) + (e >> 1) * 8, c = n0 + wn * 32 + ni * 8 + (lane & 3) * 2 + (e & 1);
    let s = 0; if (r < rowsA && c < rowsB) for (let k = 0; k < K; k++) s += A[r * Kp + k] * B[c * Kp + k];
    if (s !== acc[t][mi][ni][e]) bad++;  // rows/cols past the ends must come out 0 (never NaN)
  }
}
return bad;
}
// bank check for ldmatrix: 8 addresses of one matrix must hit distinct 16-byte bank groups
let conflicts = 0;
for (let r0 = 0; r0 < 128; r0 += 8) for (let c = 0; c < 4; c++) { const groups = new Set(); for (let j = 0; j < 8; j++) groups.add((swz(r0 + j, c) % 128) >> 4); if (groups.size !== 8) conflicts++; }

// cp.async pipeline of mma_tile: prologue commits STAGES-1 groups (slices 0..STAGES-2, empty
// past KT); iteration kt waits until at most STAGES-2 groups are pending, barriers, issues slice
// kt+STAGES-1 into stage (kt+STAGES-1) % STAGES, commits, reads stage kt % STAGES.
function pipelineErrors(STAGES, KT) {
  const errs = [];
  let committed = 0;
  const slotOf = new Map(); // slice -> [stage, group]
  for (let s = 0; s < STAGES - 1; s++) { if (s < KT) slotOf.set(s, [s % STAGES, committed]); committed++; }
  const lastRead = new Array(STAGES).fill(-1); // iteration that last read each stage
  for (let kt = 0; kt < KT; kt++) {
    const complete = committed - (STAGES - 2); // groups 0..complete-1 have landed after the wait
    const next = kt + STAGES - 1;
    if (next < KT) {
      const st = next % STAGES;
      // written after this iteration's barrier: every warp has finished iterations < kt, so the
      // stage must not be read in iteration kt itself (it is read at kt % STAGES).
      if (st === kt % STAGES) errs.push(`S=${STAGES} KT=${KT}: stage ${st} overwritten while read at kt=${kt}`);
      if (lastRead[st] >= kt) errs.push(`S=${STAGES} KT=${KT}: stage ${st} still in use`);
      slotOf.set(next, [st, committed]);
    }
    committed++;
    const [st, grp] = slotOf.get(kt);
    if (st !== kt % STAGES) errs.push(`slice ${kt} read from the wrong stage`);
    if (grp >= complete) errs.push(`S=${STAGES} KT=${KT}: slice ${kt} (group ${grp}) read before it landed (${complete} complete)`);
    lastRead[st] = kt;
  }
  return errs;
}
const pipe = [];
for (let S = 2; S <= 5; S++) for (let KT = 0; KT <= 12; KT++) pipe.push(...pipelineErrors(S, KT));
if (pipe.length) console.log(pipe.slice(0, 5).join('\n'));

// Full interior tile, and edge tiles: rows_a / rows_b ending inside the tile, K % 32 != 0, and a
// tile at (m0, n0) = (BM, 128) of a larger problem.
const cases = [[BM, 128, 96, 0, 0], [BM - 13, 77, 70, 0, 0], [BM + 5, 128 + 3, 33, BM, 128], [1, 1, 1, 0, 0]];
let bad = 0;
for (const [ra, rb, K, m0, n0] of cases) bad += tileErrors(ra, rb, K, m0, n0);
console.log(`BM=${BM}: wrong outputs ${bad} (${cases.length} tiles incl. edges), ldmatrix bank conflicts ${conflicts}, pipeline hazards ${pipe.length}`);
process.exitCode = bad || conflicts || pipe.length ? 1 : 0;
