#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: build the CUDA variant, run the start-up self-test
# and the CUDA tests (parity against the float64/CPU references), the CUDA benchmarks, Python sparsify's training
# step on the same GPU with the comparison (bench/README.md: GPU comparison), then the core tests
# against the CUDA build. Everything goes under $OUT (default bench/out/gpu-check-<time>/); the
# short summary (summary.txt) is printed last.
#   scripts/gpu-check.sh            full run (bench at N=16384, D=4096, M=131072)
#   QUICK=1 scripts/gpu-check.sh    smaller benchmark sizes (both sides)
# Environment:
#   GPU_CHECK_BUDGET_S (default 560)  wall-clock budget: each phase runs under `timeout` with what
#                                     is left, a phase that finds < 15 s left is skipped (so one
#                                     device-tool call, 600 s at most, always gets its files back);
#                                     0 = no budget
#   SPARSIFY_BENCH_PYTHON (python3)   the Python with torch (+ triton) for the sparsify step
# Carried helpers (scripts/device-pack.sh makes them; the device machine has no node):
#   .device/node.tar.xz, .device/node_modules.tar.xz, bench/vendor/sparsify/
# Never changes GPU settings (clocks, power, MIG, persistence).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-bench/out/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
status=0
started=$(date +%s)
budget="${GPU_CHECK_BUDGET_S:-560}"
PY="${SPARSIFY_BENCH_PYTHON:-python3}"
S="$OUT/summary.txt"
: > "$S"

# Seconds left in the budget (a large number when there is none).
left() {
  if [ "$budget" = 0 ]; then echo 100000; else echo $(( started + budget - $(date +%s) )); fi
}
# phase NAME: prints the header; returns 1 (phase skipped) when the budget is nearly spent.
phase() {
  echo "== $1 (t=$(( $(date +%s) - started ))s)"
  if [ "$(left)" -lt 15 ]; then
    echo "$1: SKIPPED, time budget spent (GPU_CHECK_BUDGET_S=$budget)" | tee -a "$S"; status=1; return 1
  fi
}
# limited CMD...: runs CMD under the remaining budget.
limited() {
  if [ "$budget" = 0 ]; then "$@"; else timeout --kill-after=5 "$(( $(left) - 5 ))" "$@"; fi
}
# untar FILE: xz tarball into the current folder (tar -J, else Python's tarfile).
untar() {
  tar -xJf "$1" 2>/dev/null || "$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall('.')" "$1"
}

echo "== environment" | tee -a "$S"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi: unavailable"; } | tee "$OUT/nvidia-smi.txt"
if [ -f .device/node.tar.xz ]; then  # the carried node (the device image has none)
  mkdir -p /tmp/sparsify-node && (cd /tmp/sparsify-node && untar "$OLDPWD/.device/node.tar.xz") && export PATH="/tmp/sparsify-node/bin:$PATH"
fi
if ! command -v node > /dev/null; then
  echo "no node on this machine: run scripts/device-pack.sh and carry .device (bench/README.md)" | tee -a "$S"; exit 1
fi
echo "node $(node --version)" | tee -a "$S"
if [ ! -d node_modules ] && [ -f .device/node_modules.tar.xz ]; then
  untar .device/node_modules.tar.xz || { echo "unpacking .device/node_modules.tar.xz failed" | tee -a "$S"; exit 1; }
fi
if [ ! -d node_modules ]; then
  npm install --no-audit --no-fund > "$OUT/npm-install.log" 2>&1 || { echo "npm install failed (see $OUT/npm-install.log)" | tee -a "$S"; exit 1; }
fi

phase "build (CPU + CUDA)" || exit 1
t=$(date +%s)
if ! limited node scripts/build-native.mjs --cuda > "$OUT/build.log" 2>&1; then
  echo "CUDA build FAILED (see build.log)" | tee -a "$S"; tail -30 "$OUT/build.log"; exit 1
fi
echo "build: $(( $(date +%s) - t ))s" | tee -a "$S"

phase "probe" && node -e "const a=require('./native/build-cuda/Release/sparsify.node'); let g; try { g = a.testing.cudaGemmPath(); } catch (e) { g = String(e.message); } console.log(JSON.stringify({probe:a.cudaProbe(), fusedTopkMaxK:a.testing.cudaFusedTopkMaxK(), gemmPath:g}))" \
  | tee "$OUT/probe.json" | tee -a "$S"

# The start-up self-test first (native/cuda/self_test.cu: every kernel family against host
# references); a failure here means CUDA would be disabled for users of this GPU.
if phase "start-up self-test"; then
  if ! limited node -e "const r=require('./native/build-cuda/Release/sparsify.node').cudaSelfTest(); console.log('self-test: ' + JSON.stringify(r)); process.exit(r.ok && r.ms < 1000 ? 0 : 1)" 2>&1 | tee -a "$S"; then
    echo "self-test FAILED (or took >= 1 s)" | tee -a "$S"; status=1
  fi
fi

if phase "CUDA tests"; then
  t=$(date +%s)
  # The CUDA suites of the emulated pass of npm test, here on the real device.
  limited node scripts/test.mjs test/cuda/*.test.ts test/core/device-tensor.test.ts test/cli/device.test.ts > "$OUT/tests.tap" 2>&1 || status=1
  grep -E "^# (tests|pass|fail|skipped)|^not ok|^  (tests|skipped in every pass)|^    test/" "$OUT/tests.tap" | tee -a "$S"
  echo "CUDA tests: $(( $(date +%s) - t ))s" | tee -a "$S"
fi

if phase "benchmarks (ours)"; then
  t=$(date +%s)
  limited node --conditions=sparsify-source --import tsx bench/cuda.ts --json "$OUT/bench.json" ${QUICK:+--quick} 2>&1 \
    | tee "$OUT/bench.txt" | tee -a "$S" || status=1
  echo "benchmarks: $(( $(date +%s) - t ))s" | tee -a "$S"
fi

if phase "CLI --device (auto must pick cuda on a GPU machine)"; then
  limited node scripts/test.mjs test/cli/device.test.ts > "$OUT/cli-device.tap" 2>&1 || status=1
  grep -E "^# (pass|fail)|^not ok" "$OUT/cli-device.tap" | sed 's/^/cli /' | tee -a "$S"
fi

# transformers' GPT-2 forward on the checkpoint bench/cuda.ts wrote (bench/ref/torch_gpt2_forward.py).
if phase "transformers GPT-2 forward (Python, same GPU)"; then
  CKPT="$(node -e "console.log(require('path').join(require('os').tmpdir(), 'sparsify-bench-gpt2-small'))")"
  if [ ! -f "$CKPT/model.safetensors" ]; then
    echo "torch forward skipped: no checkpoint at $CKPT (bench/cuda.ts writes it)" | tee -a "$S"
  elif "$PY" -c "import torch, transformers; assert torch.cuda.is_available()" > /dev/null 2>&1; then
    limited "$PY" bench/ref/torch_gpt2_forward.py "$CKPT" ${QUICK:+--batch 4 --reps 5} > "$OUT/torch-forward.json" 2> "$OUT/torch-forward.log" \
      && tee -a "$S" < "$OUT/torch-forward.json" \
      || { echo "torch forward FAILED (see torch-forward.log)" | tee -a "$S"; status=1; }
  else
    echo "torch forward skipped: $PY cannot import torch (with CUDA) and transformers" | tee -a "$S"
  fi
fi

# Python sparsify's training step on the same GPU (bench/ref/sparsify_gpu_step.py).
skip_ref() {
  echo "sparsify comparison skipped: $1" | tee -a "$S"
  node -e 'require("fs").writeFileSync(process.argv[1], JSON.stringify({ skipped: process.argv[2] }) + "\n")' "$OUT/sparsify-gpu.json" "$1"
}
if phase "sparsify (Python, same GPU)"; then
  if [ ! -f bench/vendor/sparsify/sparsify/sparse_coder.py ]; then
    skip_ref "bench/vendor/sparsify is missing (carry it: bench/README.md, GPU comparison)"
  elif ! "$PY" -c "import torch; assert torch.cuda.is_available()" > /dev/null 2>&1; then
    skip_ref "$PY has no torch that sees a CUDA device"
  else
    t=$(date +%s)
    if ! PYTHONUNBUFFERED=1 limited "$PY" bench/ref/sparsify_gpu_step.py --json "$OUT/sparsify-gpu.json" ${QUICK:+--quick} \
        > "$OUT/sparsify-gpu.log" 2>&1; then
      status=1; echo "sparsify step FAILED (see sparsify-gpu.log)" | tee -a "$S"; tail -20 "$OUT/sparsify-gpu.log"
    fi
    echo "sparsify: $(( $(date +%s) - t ))s" | tee -a "$S"
  fi
  echo "== comparison" | tee -a "$S"
  node --import tsx bench/lib/compare-gpu.ts "$OUT/bench.json" "$OUT/sparsify-gpu.json" --out "$OUT/compare.json" 2>&1 | tee -a "$S"
fi

if phase "core tests against the CUDA build (same API, CPU kernels)"; then
  limited node scripts/test.mjs test/core/*.test.ts > "$OUT/core-tests.tap" 2>&1 || status=1
  grep -E "^# (pass|fail)" "$OUT/core-tests.tap" | sed 's/^/core /' | tee -a "$S"
fi

# The device tool returns at most 8 files: keep the summary and the JSON results, pack the logs.
(
  cd "$OUT" || exit
  logs=()
  for f in *; do
    case "$f" in summary.txt | bench.json | sparsify-gpu.json | compare.json | probe.json | torch-forward.json | logs.tar.gz) ;; *) [ -e "$f" ] && logs+=("$f") ;; esac
  done
  if [ "${#logs[@]}" -gt 0 ]; then tar -czf logs.tar.gz "${logs[@]}" && rm -rf "${logs[@]}"; fi
)
echo "total: $(( $(date +%s) - started ))s, status $status" | tee -a "$S"
echo "== done: results in $OUT (logs in logs.tar.gz)"
echo "== summary"
cat "$S"
exit $status
