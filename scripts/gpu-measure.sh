#!/usr/bin/env bash
# One short device run of `lifeline measure` on an NVIDIA GPU (an H200 here; nothing else depends on this
# script). On the GPU machine, from the repository root, with the checkout's
# .llama-cpp/src (the pinned llama.cpp source, from `scripts/setup.sh --with-llama-cpp`) carried along:
#   scripts/gpu-measure.sh OUT_DIR
# It builds llama.cpp's CUDA backend from that source (the image's nvcc, sm_90 for Hopper) and lifeline without
# LibTorch against it, then times batch-1 decode of three model shapes in four formats at 512, 4k and 16k tokens
# with every layer on the GPU, and writes OUT_DIR/measure.{csv,json} with the forecast for hwspec/nvidia_h200.yaml
# beside each point. Budget: about 5 minutes of device time (the CUDA build for one architecture dominates).
set -euo pipefail
out="${1:?usage: scripts/gpu-measure.sh OUT_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command -v nvcc >/dev/null || { echo "gpu-measure: no nvcc on this machine" >&2; exit 1; }
[[ -f .llama-cpp/src/CMakeLists.txt ]] || { echo "gpu-measure: .llama-cpp/src missing (scripts/setup.sh --with-llama-cpp)" >&2; exit 1; }
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

# llama.cpp with CUDA, in its own tree that lifeline's CMake reads like .llama-cpp (src/ + build/bin/).
cuda="$here/.llama-cpp-cuda"
mkdir -p "$cuda"
ln -sfn "$here/.llama-cpp/src" "$cuda/src"
cmake -S "$cuda/src" -B "$cuda/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_OPENSSL=OFF >/dev/null
cmake --build "$cuda/build" -j "$(nproc)" --target llama

cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIFELINE_TORCH=OFF -DBUILD_TESTING=OFF \
  -DLIFELINE_LLAMA_CPP_DIR="$cuda" >/dev/null
cmake --build build-cuda -j "$(nproc)" --target lifeline lifeline-llama
build-cuda/lifeline measure --model qwen3-0.6b,qwen3-1.7b,llama-3.2-3b \
  --plan gguf-f16,gguf-w4,gguf-w2,gguf-w4w2-gateup --context 512,4096,16384 --gpu-layers -1 --threads 4 \
  --rounds 2 --device nvidia_h200 --max-other-cpu 0.5 --gguf-cache "$out/gguf" --out "$out" --format csv
