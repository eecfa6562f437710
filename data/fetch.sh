#!/usr/bin/env bash
# Downloads the real model and data from their public sources and verifies
# them against data/SHA256SUMS. Usage: data/fetch.sh [DEST]   (default: data/downloaded)
# Then: export RESNET8_DATA=DEST  (tests and examples read it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-$here/downloaded}
tiny=https://raw.githubusercontent.com/mlcommons/tiny/master/benchmark
cifar=https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
mkdir -p "$dest"/{models,cifar10,perf_samples,reference}
cd "$dest"

get() { # url file
  [ -s "$2" ] && return 0
  echo "fetch $2" >&2
  curl -fsSL --retry 3 -o "$2.part" "$1" && mv "$2.part" "$2"
}

for f in pretrainedResnet.h5 pretrainedResnet.tflite pretrainedResnet_quant.tflite; do
  get "$tiny/training/image_classification/trained_models/$f" "models/$f"
done

if [ ! -s cifar10/test_batch_head.bin ]; then
  get "$cifar" cifar-10-binary.tar.gz
  echo "c32a1d4ab5d03f1284b67883e8d87530  cifar-10-binary.tar.gz" | md5sum -c -
  tar -xzf cifar-10-binary.tar.gz cifar-10-batches-bin/test_batch.bin cifar-10-batches-bin/batches.meta.txt
  # The full test batch stays available for 10,000-image runs.
  mv cifar-10-batches-bin cifar10/
  grep . cifar10/cifar-10-batches-bin/batches.meta.txt > cifar10/batches.meta.txt
  head -c $((1017 * 3073)) cifar10/cifar-10-batches-bin/test_batch.bin > cifar10/test_batch_head.bin
  rm cifar-10-binary.tar.gz
fi

get "$tiny/evaluation/datasets/ic01/y_labels.csv" perf_samples/y_labels.csv
cut -d, -f1 perf_samples/y_labels.csv | while read -r name; do
  [ -n "$name" ] && get "$tiny/evaluation/datasets/ic01/$name" "perf_samples/$name"
done

echo "verifying checksums" >&2
# reference/ holds TensorFlow outputs that cannot be downloaded (see data/README.md).
grep -v ' reference/' "$here/SHA256SUMS" | sha256sum -c --quiet -
echo "ok: data in $dest (export RESNET8_DATA=$dest)"
