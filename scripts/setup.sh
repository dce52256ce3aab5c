#!/usr/bin/env bash
# Installs every Debian package lifeline needs (scripts/setup-packages.txt),
# then configures and builds it in ./build. Idempotent: fast when all is there.
#   scripts/setup.sh                  # packages + build
#   scripts/setup.sh --packages-only  # packages only
#   scripts/setup.sh --with-llama-cpp # also llama.cpp (npm + native build in .llama-cpp/) for measure/validate
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
packages_only=0
with_llama=0
for arg in "$@"; do
  case "$arg" in
    --packages-only) packages_only=1 ;;
    --with-llama-cpp) with_llama=1 ;;
    *) echo "setup: unknown option '$arg' (known: --packages-only, --with-llama-cpp)" >&2; exit 2 ;;
  esac
done
((packages_only)) && exit 0
((with_llama)) && scripts/setup-llama-cpp.sh

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIFELINE_TORCH="${LIFELINE_TORCH:-AUTO}" >/dev/null
cmake --build build -j "$(nproc)"
