#!/usr/bin/env bash
# Installs llama.cpp, the reference engine `lifeline measure` and `validate` time decodes with,
# into ./.llama-cpp (ignored by git). Called by `scripts/setup.sh --with-llama-cpp`.
#
#  1. npm: node-llama-cpp (pinned below), with install scripts disabled, so nothing is fetched from
#     anywhere but the npm registry. The package carries its exact llama.cpp source as
#     llama/gitRelease.bundle; its prebuilt Node binaries are not used (through Node, llama.cpp
#     starts worker threads per token and decodes 30-45% below the native library).
#  2. the bundle is cloned and the llama library plus llama-bench are built natively with CMake
#     (CPU backend, -march=native, shared libraries), in .llama-cpp/build.
# Idempotent: a finished build of the same pin is kept (stamp file .llama-cpp/build/lifeline.stamp).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pin="3.22.1"   # node-llama-cpp; keep in step with experiments/measure/README.md
root="$here/.llama-cpp"
stamp="$root/build/lifeline.stamp"
want="node-llama-cpp@$pin native cpu"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$root/build/bin/llama-bench" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "setup-llama-cpp: npm is missing (apt-get install npm, or Node.js 20 with npm)" >&2; exit 1; }
command -v git >/dev/null || { echo "setup-llama-cpp: git is missing (apt-get install git)" >&2; exit 1; }

mkdir -p "$root/npm"
if [[ ! -f "$root/npm/node_modules/node-llama-cpp/package.json" ]] ||
   ! grep -q "\"version\": \"$pin\"" "$root/npm/node_modules/node-llama-cpp/package.json"; then
  echo "setup-llama-cpp: npm install node-llama-cpp@$pin (scripts disabled)" >&2
  (cd "$root/npm" && [[ -f package.json ]] || echo '{"name":"lifeline-llama-cpp","private":true}' > package.json)
  npm install --prefix "$root/npm" --ignore-scripts --omit=optional --no-audit --no-fund --loglevel=error \
    "node-llama-cpp@$pin" >&2
fi
bundle="$root/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle"
[[ -f "$bundle" ]] || { echo "setup-llama-cpp: $bundle is missing from the npm package" >&2; exit 1; }

if [[ ! -d "$root/src/.git" ]]; then
  rm -rf "$root/src"
  git -c advice.detachedHead=false clone -q "$bundle" "$root/src"
fi

echo "setup-llama-cpp: building llama.cpp ($(git -C "$root/src" rev-parse --short HEAD)) in $root/build" >&2
cmake -S "$root/src" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TOOLS=ON >/dev/null
cmake --build "$root/build" -j "$(nproc)" --target llama llama-bench
echo "$want" > "$stamp"
