#!/usr/bin/env bash
# The browser check: builds the demo, runs 256 CIFAR-10 head images in
# headless Chromium on WebGPU (SwiftShader), and compares every probability
# with the native CPU engine; then the page's per-layer diff mode on 8 images
# (with the Keras per-layer bundle) and 64 images, each against the native
# `resnet8 diff --json` of the same images, and once with one layer's GPU
# output spoilt on purpose, which the page must name. Then int8: the MLPerf
# int8 .tflite on the same images, equal to the native CPU int8 engine
# exactly, and our own quantized .safetensors in the diff mode, every layer
# exact. Then the tf2onnx .onnx on the same images against the native CPU
# engine running that file. Exits non-zero on no adapter or any mismatch;
# each run ends in a summary line.
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

# int8: the MLPerf .tflite, its dequantized outputs equal to the native CPU int8 engine's bit for bit.
int8="$RESNET8_DATA/models/pretrainedResnet_quant.tflite"
target/release/resnet8 predict --device cpu --model "$int8" \
  --data "$RESNET8_DATA/$head" --limit "$images" --out "$out/cpu_int8_probs.npy"
python3 web/server.py --check --images "$images" --expect "$out/cpu_int8_probs.npy" --model "$int8" --tolerance 0 \
  --data-dir "$RESNET8_DATA" --screenshot "$out/int8.png"
# Our own int8 model, every layer of the page's GPU run against its CPU int8 engine (exact) and the native digests.
target/release/resnet8 quantize --model "$model" --calibration "$RESNET8_DATA/perf_samples" --limit 64 \
  --method minmax --out "$out/own_int8.safetensors" > /dev/null
target/release/resnet8 diff --model "$out/own_int8.safetensors" --data "$RESNET8_DATA/$head" --images 8 --json \
  > "$out/native_int8_diff_8.json"
python3 web/server.py --check --diff 8 --expect-diff "$out/native_int8_diff_8.json" --model "$out/own_int8.safetensors" \
  --tolerance-preset strict --data-dir "$RESNET8_DATA" --screenshot "$out/int8_diff_8.png"

# ONNX: the tf2onnx export, read in the page, against the native CPU engine on the same file.
onnx="$RESNET8_DATA/models/resnet8_float.onnx"
target/release/resnet8 predict --device cpu --model "$onnx" \
  --data "$RESNET8_DATA/$head" --limit "$images" --out "$out/cpu_onnx_probs.npy"
python3 web/server.py --check --images "$images" --expect "$out/cpu_onnx_probs.npy" --model "$onnx" \
  --data-dir "$RESNET8_DATA" --screenshot "$out/onnx.png"
