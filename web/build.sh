#!/usr/bin/env bash
# Builds the browser demo into web/pkg/: the engine as WebAssembly (wgpu's
# WebGPU backend), its JS bindings, and the model converted to .safetensors.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export RESNET8_DATA=${RESNET8_DATA:-$(cd .. && pwd)/shared/data}
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# wasm-bindgen-cli must be the same version as the wasm-bindgen crate.
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want (a few minutes, once)" >&2
  cargo install wasm-bindgen-cli --version "$want"
fi
cargo build --release --target wasm32-unknown-unknown -p resnet8-web
mkdir -p web/pkg
wasm-bindgen --target web --no-typescript --out-dir web/pkg target/wasm32-unknown-unknown/release/resnet8_web.wasm
cargo build --release
if [ -f "$RESNET8_DATA/models/pretrainedResnet.h5" ]; then
  target/release/resnet8 convert --model "$RESNET8_DATA/models/pretrainedResnet.h5" --out web/pkg/model.safetensors
else
  echo "no model in $RESNET8_DATA: choose a .safetensors in the page" >&2
fi
