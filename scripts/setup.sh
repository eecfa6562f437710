#!/usr/bin/env bash
# Installs what building and running need on Debian/Ubuntu: libhdf5 (the .h5
# importer), Mesa's lavapipe Vulkan and llvmpipe GL drivers (a GPU device on
# the CPU, for machines without a GPU). Safe to run again.
set -euo pipefail
pkgs=(libhdf5-dev pkg-config mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Vulkan loaders complain without a private runtime dir.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  echo "hint: export XDG_RUNTIME_DIR=\$(mktemp -d) to silence Vulkan's XDG_RUNTIME_DIR warning" >&2
fi
