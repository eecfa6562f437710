#!/usr/bin/env bash
# Sourced by run.sh and test.sh (also runnable alone): installs what building
# and running need on Debian/Ubuntu (libhdf5 for the .h5 importer; Mesa's
# lavapipe Vulkan and llvmpipe GL drivers, a GPU device on the CPU for
# machines without a GPU) and sets RESNET8_DATA and XDG_RUNTIME_DIR.
set -euo pipefail
# spirv-tools: the tests check every shader variant's SPIR-V with spirv-val.
pkgs=(libhdf5-dev pkg-config mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri spirv-tools)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export RESNET8_DATA=${RESNET8_DATA:-$(cd "$repo/.." && pwd)/shared/data}
# Vulkan loaders warn without a private runtime directory.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  export XDG_RUNTIME_DIR=$(mktemp -d)
fi
chmod 700 "$XDG_RUNTIME_DIR" 2>/dev/null || true
