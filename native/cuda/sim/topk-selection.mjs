// Selection check (no GPU needed): sequential re-implementation of row_topk.cuh (radix select, the
// lower-index tie-break, slot assignment, bitonic sort) and of the fused encoder epilogue
// (sae_encode.cu: per-split candidate lists with a running minimum, then the merge by row_topk),
// checked against the CPU reference's rule — the k largest values, ties to the lower latent —
// on random rows full of ties (zeros and a few repeated values).
// Usage: node native/cuda/sim/topk-selection.mjs [trials]
// The atomics of row_topk are modelled by visiting the row in a random order for the slot
// assignment, so a result that depends on their arrival order shows up as a mismatch. The
// earlier, faulty algorithms (the `old*` rules below) are run too and must fail: that shows the test can
// see the bugs that were fixed.
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
const key = (v) => { f32[0] = v; let u = u32[0]; if (u === 0x80000000) u = 0; return ((u & 0x80000000) ? ~u : (u | 0x80000000)) >>> 0; };
const before = (av, ai, bv, bi) => av > bv || (av === bv && (ai >>> 0) < (bi >>> 0));
const shuffled = (n) => { const a = Array.from({ length: n }, (_, i) => i); for (let i = n - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; } return a; };

// One radix select: the `kk`-th element (descending keys, or ascending when `asc`) among the
// values `keys` (uint32) kept by `filter`. Returns {desired, kk} as the kernel's shared state.
function radixSelect(keys, kk, asc) {
  let desired = 0, mask = 0, eqcount = 0;
  for (let shift = 24; shift >= 0; shift -= 8) {
    const hist = new Array(256).fill(0);
    for (const kv of keys) if (((kv & mask) >>> 0) === desired) hist[(kv >>> shift) & 255]++;
    let cum = 0;
    for (let t = 0; t < 256; t++) {
      const b = asc ? t : 255 - t;
      if (cum + hist[b] >= kk) { kk -= cum; desired = (desired | (b << shift)) >>> 0; mask = (mask | (255 << shift)) >>> 0; eqcount = hist[b]; break; }
      cum += hist[b];
    }
  }
  return { desired, kk, eqcount };
}

// row_topk: vals[j] with index idx[j]; `oldTies` = the earlier, faulty rule (ties in atomic order).
function rowTopk(vals, idx, k, oldTies = false) {
  if (k > vals.length) throw new Error('k > L is rejected by the host wrapper');
  const sel = radixSelect(vals.map(key), k, false);
  const kth = sel.desired, ties = sel.kk, greater = k - ties;
  let maxTie = 0xffffffff;
  if (!oldTies && sel.eqcount > ties) {
    const tiedIdx = [];
    vals.forEach((v, j) => { if (key(v) === kth) tiedIdx.push(idx[j] >>> 0); });
    maxTie = radixSelect(tiedIdx, ties, true).desired;
  }
  const P = 1 << Math.ceil(Math.log2(Math.max(k, 1)));
  const sv = new Array(P).fill(-3.4028234663852886e38), si = new Array(P).fill(-1);
  let gt = 0, eq = 0;
  for (const j of shuffled(vals.length)) { // arbitrary arrival order of the atomics
    const kv = key(vals[j]);
    let slot = -1;
    if (kv > kth) slot = gt++;
    else if (kv === kth && (idx[j] >>> 0) <= maxTie) { const e = eq++; if (e < ties) slot = greater + e; }
    if (slot >= 0) { sv[slot] = vals[j]; si[slot] = idx[j]; }
  }
  for (let size = 2; size <= P; size <<= 1) for (let stride = size >> 1; stride > 0; stride >>= 1) for (let i = 0; i < P / 2; i++) {
    const lo = 2 * stride * Math.floor(i / stride) + (i % stride), hi = lo + stride, up = (lo & size) === 0;
    const sw = up ? before(sv[hi], si[hi], sv[lo], si[lo]) : before(sv[lo], si[lo], sv[hi], si[hi]);
    if (sw) { [sv[lo], sv[hi]] = [sv[hi], sv[lo]]; [si[lo], si[hi]] = [si[hi], si[lo]]; }
  }
  return { v: sv.slice(0, k), i: si.slice(0, k) };
}

// The CPU reference's rule: sort by (value desc, index asc), take k.
function ref(vals, idx, k) {
  const o = vals.map((_, j) => j).sort((a, b) => vals[b] - vals[a] || idx[a] - idx[b]).slice(0, k);
  return { v: o.map((j) => vals[j]), i: o.map((j) => idx[j]) };
}

// The encode epilogue of one split: latents [c0, c1) of one row arrive in increasing order; a
// value enters if strictly above the running minimum and replaces the entry chosen by `evict`.
const FLT_MAX = 3.4028234663852886e38;
function splitCandidates(pre, c0, c1, k, oldEvict = false, oldInit = false) {
  const cv = new Array(k).fill(-FLT_MAX), ci = new Array(k).fill(-1);
  let thr = -FLT_MAX, pos = 0;
  for (let c = c0; c < c1; c++) {
    const v = pre[c];
    if (!(v > thr)) continue;
    cv[pos] = v; ci[pos] = c;
    // lane-strided scan (lane = i % 32) then butterfly; modelled as one ordered scan with the
    // same total order: value asc, latent desc, slot asc (old: value asc, slot asc).
    let mv = oldInit ? FLT_MAX : Infinity, mi = -1, mp = 0x7fffffff;
    for (let i = 0; i < k; i++) {
      const better = oldEvict ? (cv[i] < mv || (cv[i] === mv && i < mp))
        : (cv[i] < mv || (cv[i] === mv && (ci[i] > mi || (ci[i] === mi && i < mp))));
      if (better) { mv = cv[i]; mi = ci[i]; mp = i; }
    }
    if (mp === 0x7fffffff) throw new Error('eviction slot out of range');
    thr = mv; pos = mp;
  }
  return { cv, ci };
}

// Fused TopK: S splits of whole 128-latent tiles, candidates [S, k], merged by row_topk.
function fusedTopk(pre, k, S, opts = {}) {
  const M = pre.length, ntiles = Math.ceil(M / 128), tps = Math.ceil(ntiles / Math.min(S, ntiles));
  const vals = [], idx = [];
  for (let t0 = 0; t0 < ntiles; t0 += tps) {
    const { cv, ci } = splitCandidates(pre, t0 * 128, Math.min((t0 + tps) * 128, M), k, opts.oldEvict, opts.oldInit);
    vals.push(...cv); idx.push(...ci);
  }
  return rowTopk(vals, idx, k, opts.oldTies);
}

const relu = (z) => (z > 0 ? z : 0);
function randomRow(L) {
  const levels = [0.5, 1, 2].map(Math.fround);
  return Array.from({ length: L }, () => {
    const r = Math.random();
    if (r < 0.35) return 0; // ReLU zeros: the common tie
    if (r < 0.55) return levels[Math.floor(Math.random() * 3)]; // ties above zero
    return Math.fround(Math.random() < 0.2 ? -Math.random() : Math.random() * 3);
  });
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const trials = +process.argv[2] || 300;
let bad = 0;
const fail = (what, ...info) => { bad++; if (bad < 5) console.log('MISMATCH', what, ...info); };
let oldEvictMisses = 0, oldTieMisses = 0;
for (let t = 0; t < trials; t++) {
  const L = 1 + Math.floor(Math.random() * 900), k = 1 + Math.floor(Math.random() * Math.min(L, 160));
  const row = randomRow(L).map(relu), ids = row.map((_, j) => j);
  // row_topk on a dense row (the unfused fallback), twice: the output must not depend on the order.
  const r = ref(row, ids, k), a = rowTopk(row, ids, k), a2 = rowTopk(row, ids, k);
  if (!same(a, r)) fail('row_topk dense', L, k);
  if (!same(a, a2)) fail('row_topk not deterministic', L, k);
  // AuxK over a random dead set: compact values, idx_map = dead list (ascending).
  const dead = ids.filter(() => Math.random() < 0.3);
  if (dead.length) {
    const ka = 1 + Math.floor(Math.random() * dead.length);
    if (!same(rowTopk(dead.map((m) => row[m]), dead, ka), ref(dead.map((m) => row[m]), dead, ka))) fail('auxk compact', L, ka);
  }
  // Fused: 1..6 splits of 128-latent tiles, then the merge.
  const S = 1 + Math.floor(Math.random() * 6);
  if (!same(fusedTopk(row, k, S), r)) fail('fused topk', L, k, S);
  if (!same(fusedTopk(row, k, S, { oldEvict: true }), r)) oldEvictMisses++;
  if (!same(rowTopk(row, ids, k, true), r)) oldTieMisses++;
}
// Hand-made cases: the worked example of the eviction fix, and k entries of +inf.
if (!same(fusedTopk([1, 1, 2].map(Math.fround), 2, 1), { v: [2, 1], i: [2, 0] })) fail('worked example (1@0, 1@1, 2@2), k=2');
const infRow = [Infinity, Infinity, Infinity, 5, Infinity];
if (!same(fusedTopk(infRow, 2, 1), { v: [Infinity, Infinity], i: [0, 1] })) fail('+inf entries');
let oldInitThrows = false; // the earlier, faulty start: the minimum search began at FLT_MAX -> slot 0x7fffffff
try { fusedTopk(infRow, 2, 1, { oldInit: true }); } catch { oldInitThrows = true; }
if (!oldInitThrows) fail('the earlier +inf case should have produced an out-of-range slot');
console.log(`trials ${trials}: mismatches ${bad}; earlier faulty rules (expected > 0): eviction by slot ${oldEvictMisses}, ties in atomic order ${oldTieMisses}`);
process.exitCode = bad || !oldEvictMisses || !oldTieMisses ? 1 : 0;
