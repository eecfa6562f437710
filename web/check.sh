#!/usr/bin/env bash
# The browser check: builds the demo, runs 256 CIFAR-10 head images in
# headless Chromium on WebGPU (SwiftShader), and compares every probability
# with the native CPU engine; then the page's per-layer diff mode on 8 images
# (with the Keras per-layer bundle) and 64 images, each against the native
# `resnet8 diff --json` of the same images, and once with one layer's GPU
# output spoilt on purpose, which the page must name. Exits non-zero on no
# adapter or any mismatch; each run ends in a summary line.
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
model="$RESNET8_DATA/models/pretrainedResnet.h5"
head="cifar10/test_batch_head.bin"
target/release/resnet8 predict --device cpu --model "$model" \
  --data "$RESNET8_DATA/$head" --limit "$images" --out "$out/cpu_probs.npy"
python3 web/server.py --check --images "$images" --expect "$out/cpu_probs.npy" \
  --data-dir "$RESNET8_DATA" --screenshot "$out/screenshot.png"

# The diff mode. The native diff gives the native CPU engine's per-layer digests.
for n in 8 64; do
  target/release/resnet8 diff --model "$model" --data "$RESNET8_DATA/$head" --images "$n" --json \
    > "$out/native_diff_$n.json"
done
python3 web/server.py --check --diff 8 --expect-diff "$out/native_diff_8.json" \
  --reference reference/keras_layers_head8.npz --data-dir "$RESNET8_DATA" --screenshot "$out/diff_8.png"
python3 web/server.py --check --diff 64 --expect-diff "$out/native_diff_64.json" \
  --data-dir "$RESNET8_DATA" --screenshot "$out/diff_64.png"
# The test switch: a spoilt conv2d_4 must be named as the first layer over tolerance.
python3 web/server.py --check --diff 8 --expect-diff "$out/native_diff_8.json" --perturb conv2d_4 \
  --data-dir "$RESNET8_DATA" --screenshot "$out/diff_perturbed.png"
