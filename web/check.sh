#!/usr/bin/env bash
# The browser check: builds the demo, runs 256 CIFAR-10 head images in
# headless Chromium on WebGPU (SwiftShader), and compares every probability
# with the native CPU engine. Exits non-zero on no adapter or any mismatch;
# the last line is the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
export RESNET8_DATA=${RESNET8_DATA:-$(cd .. && pwd)/shared/data}
images=${RESNET8_WEB_IMAGES:-256}
if ! command -v chromium >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
fi
bash web/build.sh
out=target/web-check
mkdir -p "$out"
target/release/resnet8 predict --device cpu --model "$RESNET8_DATA/models/pretrainedResnet.h5" \
  --data "$RESNET8_DATA/cifar10/test_batch_head.bin" --limit "$images" --out "$out/cpu_probs.npy"
python3 web/server.py --check --images "$images" --expect "$out/cpu_probs.npy" \
  --data-dir "$RESNET8_DATA" --screenshot "$out/screenshot.png"
