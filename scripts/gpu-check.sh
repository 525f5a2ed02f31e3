#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: build the CUDA variant, run the CUDA tests
# (parity against the float64/CPU references) and the CUDA benchmarks, and write everything
# under $OUT (default bench/out/gpu-check-<time>/). Prints a short summary last.
#   scripts/gpu-check.sh            full run (bench at N=16384, D=4096, M=131072)
#   QUICK=1 scripts/gpu-check.sh    smaller benchmark sizes
# Never changes GPU settings (clocks, power, MIG, persistence).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/out/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
status=0

echo "== environment" | tee "$OUT/summary.txt"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi: unavailable"; } | tee "$OUT/nvidia-smi.txt"
node --version | tee -a "$OUT/summary.txt"

if [ ! -d node_modules ]; then
  npm install --no-audit --no-fund > "$OUT/npm-install.log" 2>&1 || { echo "npm install failed (see $OUT/npm-install.log)"; exit 1; }
fi

echo "== build (CPU + CUDA)"
start=$(date +%s)
if ! node scripts/build-native.mjs --cuda > "$OUT/build.log" 2>&1; then
  echo "CUDA build FAILED (see $OUT/build.log)" | tee -a "$OUT/summary.txt"; tail -30 "$OUT/build.log"; exit 1
fi
echo "build: $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"

echo "== probe"
node -e "const a=require('./native/build-cuda/Release/sparsify.node'); console.log(JSON.stringify({probe:a.cudaProbe(), fusedTopkMaxK:a.cudaFusedTopkMaxK()}))" \
  | tee "$OUT/probe.json" | tee -a "$OUT/summary.txt"

echo "== CUDA tests"
node scripts/test.mjs test/cuda/*.test.ts > "$OUT/tests.tap" 2>&1 || status=1
grep -E "^# (tests|pass|fail|skipped)|^not ok" "$OUT/tests.tap" | tee -a "$OUT/summary.txt"

echo "== core tests against the CUDA build (same API, CPU kernels)"
node scripts/test.mjs test/core/*.test.ts > "$OUT/core-tests.tap" 2>&1 || status=1
grep -E "^# (pass|fail)" "$OUT/core-tests.tap" | sed 's/^/core /' | tee -a "$OUT/summary.txt"

echo "== CLI --device (auto must pick cuda on a GPU machine)"
node scripts/test.mjs test/cli/device.test.ts > "$OUT/cli-device.tap" 2>&1 || status=1
grep -E "^# (pass|fail)|^not ok" "$OUT/cli-device.tap" | sed 's/^/cli /' | tee -a "$OUT/summary.txt"

echo "== benchmarks"
node --conditions=sparsify-source --import tsx bench/cuda.ts --json "$OUT/bench.json" ${QUICK:+--quick} 2>&1 \
  | tee "$OUT/bench.txt" | tee -a "$OUT/summary.txt" || status=1

echo "== transformers GPT-2 forward on the same GPU (bench/ref/torch_gpt2_forward.py)"
CKPT="$(node -e "console.log(require('path').join(require('os').tmpdir(), 'sparsify-bench-gpt2-small'))")"
if [ ! -f "$CKPT/model.safetensors" ]; then
  echo "skipped: no checkpoint at $CKPT (bench/cuda.ts writes it)" | tee -a "$OUT/summary.txt"
elif python3 -c "import torch, transformers; assert torch.cuda.is_available()" > /dev/null 2>&1; then
  python3 bench/ref/torch_gpt2_forward.py "$CKPT" ${QUICK:+--batch 4 --reps 5} > "$OUT/torch-forward.json" 2> "$OUT/torch-forward.log" \
    && tee -a "$OUT/summary.txt" < "$OUT/torch-forward.json" \
    || { echo "torch forward FAILED (see $OUT/torch-forward.log)" | tee -a "$OUT/summary.txt"; status=1; }
else
  echo "skipped: PyTorch with CUDA and transformers are not importable by python3" | tee -a "$OUT/summary.txt"
fi

echo "== done: results in $OUT (status $status)"
exit $status
