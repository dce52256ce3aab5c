#!/usr/bin/env bash
# Installs every Debian package lifeline needs (scripts/setup-packages.txt),
# then configures and builds it in ./build. Idempotent: fast when all is there.
#   scripts/setup.sh                  # packages + build
#   scripts/setup.sh --packages-only  # packages only
#   LIFELINE_TORCH=OFF scripts/setup.sh   # skip the LibTorch recovery harness
#   LIFELINE_PYTHON_REFERENCE=1 scripts/setup.sh  # also python3-torch for the benchmark comparison
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

mapfile -t pkgs < <(grep -v '^\s*#' scripts/setup-packages.txt | sed '/^\s*$/d')
if [[ "${LIFELINE_PYTHON_REFERENCE:-0}" == 1 ]]; then pkgs+=(python3-torch); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  if [[ $(id -u) != 0 ]]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[[ "${1:-}" == "--packages-only" ]] && exit 0

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIFELINE_TORCH="${LIFELINE_TORCH:-AUTO}" >/dev/null
cmake --build build -j "$(nproc)"
