#!/usr/bin/env bash
# Sets up and runs the main job: evaluates the MLPerf Tiny ResNet8 on the
# CIFAR-10 head and the MLPerf Tiny performance samples on the GPU (lavapipe
# when the machine has none), then diffs every layer against the CPU and Keras.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
[ -f "$RESNET8_DATA/models/pretrainedResnet.h5" ] || { echo "no data in $RESNET8_DATA: run data/fetch.sh DEST and export RESNET8_DATA=DEST" >&2; exit 1; }
cargo build --release
bin=target/release/resnet8
m=$RESNET8_DATA/models/pretrainedResnet.h5
$bin devices || true
$bin eval --model "$m" --data "$RESNET8_DATA/cifar10/test_batch_head.bin"
$bin eval --model "$m" --data "$RESNET8_DATA/perf_samples"
$bin diff --model "$m" --data "$RESNET8_DATA/cifar10/test_batch_head.bin" --images 8 \
  --reference "$RESNET8_DATA/reference/keras_layers_head8.npz" --plot target/diff.svg
