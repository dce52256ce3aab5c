#!/usr/bin/env bash
# One short device run for `lifeline measure` on an NVIDIA GPU (the H200 the session's device tool
# lends to some tasks). Run from the repository root on the GPU machine, after carrying build/ and
# .llama-cpp/src there:
#   scripts/gpu-measure.sh OUT_DIR
# It builds llama.cpp's CUDA backend from the same pinned source (nvcc from the machine's image,
# sm_90 for Hopper), then times batch-1 decode of three model shapes in the four formats at 512, 4k
# and 16k tokens with every layer offloaded, and writes OUT_DIR/measure.{csv,json} with the roofline's
# forecast for hwspec/nvidia_h200.yaml beside each measurement. Budget: ~5 minutes of device time
# (build ~3 min with -j16 for one architecture; 36 points of 64 tokens x 3 repetitions).
set -euo pipefail
out="${1:?usage: scripts/gpu-measure.sh OUT_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command -v nvcc >/dev/null || { echo "gpu-measure: no nvcc on this machine" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out.gpu.txt"
cmake -S .llama-cpp/src -B .llama-cpp/build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_OPENSSL=OFF >/dev/null
cmake --build .llama-cpp/build-cuda -j "$(nproc)" --target llama
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIFELINE_TORCH=OFF -DBUILD_TESTING=OFF \
  -DLIFELINE_LLAMA_CPP_DIR="$here/.llama-cpp-cuda" >/dev/null 2>&1 || true
# lifeline-llama links whatever libllama it finds: point it at the CUDA build.
mkdir -p .llama-cpp-cuda && ln -sfn "$here/.llama-cpp/src" .llama-cpp-cuda/src && ln -sfn "$here/.llama-cpp/build-cuda" .llama-cpp-cuda/build
cmake -S . -B build-cuda -DLIFELINE_LLAMA_CPP_DIR="$here/.llama-cpp-cuda" >/dev/null
cmake --build build-cuda -j "$(nproc)" --target lifeline lifeline-llama
build-cuda/lifeline measure --model qwen3-0.6b,qwen3-1.7b,llama-3.2-3b \
  --plan gguf-f16,gguf-w4,gguf-w2,gguf-w4w2-gateup --context 512,4096,16384 --gpu-layers -1 --threads 4 \
  --device nvidia_h200 --max-other-cpu 0.5 --gguf-cache "$out/gguf" --out "$out" --format csv
