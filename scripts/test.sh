#!/usr/bin/env bash
# Sets up and runs every test: unit, CLI, Keras-reference, GPU (lavapipe and
# GL), and the browser check. Data comes from $RESNET8_DATA (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
log=$(mktemp)
cargo test --release 2>&1 | tee "$log"
# On AVX-512 CPUs the binary has Mesa's CPU drivers build 512-bit SIMD
# (`prefer_wide_cpu_vectors`: 16 invocations per subgroup, not 8); the
# in-process GPU tests above ran at Mesa's default, so run them at 512 too.
if grep -qw avx512f /proc/cpuinfo; then
    LP_NATIVE_VECTOR_WIDTH=512 cargo test --release --test gpu 2>&1 | tee -a "$log"
fi
# The browser demo in headless Chromium on WebGPU, against the native CPU engine.
bash web/check.sh
passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
echo "tests: $((passed + 1)) passed, 0 failed"
