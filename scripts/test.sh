#!/usr/bin/env bash
# Sets up and runs every test: unit, CLI, Keras-reference, GPU (lavapipe and
# GL), and the browser check. Data comes from $RESNET8_DATA (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --release
# The browser demo in headless Chromium on WebGPU, against the native CPU engine.
bash web/check.sh
