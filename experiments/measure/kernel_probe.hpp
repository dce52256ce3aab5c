#pragma once
// ggml kernel rates on this machine, timed through ggml's own C API the way
// llama.cpp runs a CPU decode: a ggml thread pool on the CPU backend, weights
// in the buffer type llama.cpp would pick for them (the repacking CPU_REPACK
// buffer where ggml has an interleaved kernel for the format on this CPU).
// Linked into lifeline-llama only (`lifeline-llama kernels`); `lifeline probe`
// reads the JSON through RunLlamaDriver and turns it into per-format linear
// efficiencies and the per-operator overhead of the device spec.

#include <nlohmann/json.hpp>

namespace lifeline::measure {

struct KernelProbeOptions {
  int threads = 2;      // size of the ggml thread pool
  int matrix_mb = 256;  // MiB of weight storage streamed per timed pass of each format (beyond the caches)
  int reps = 5;         // timed passes of every measurement; the best is kept
};

// Measures, with `o.threads` threads:
//  - matvec: batch-1 ggml_mul_mat (weights [K x N] of each format f32, f16,
//    q8_0, q4_0, q4_k, q3_k, q2_k times an f32 vector of K), rotating over
//    several matrices that hold ~matrix_mb MiB of storage, so the weights
//    stream from DRAM as in a decode; rates per weight, per flop (2 per
//    weight) and per storage byte (ggml_row_size), the buffer type used, and
//    for comparison the same product on ~8 MiB of weights, which stay in cache,
//    and, where llama.cpp would repack, on the plain CPU buffer;
//  - op_overhead_s: seconds per operator of a graph of 2000 chained
//    ggml_add of 64 floats (the dispatch and thread-barrier cost per node);
//  - attention: ggml_flash_attn_ext of one query token over 4096 f16 K/V rows
//    (16 heads, 8 KV heads, head_dim 128), seconds per (head x context token);
//  - ggml_system_info: the CPU backend's feature list, as llama.cpp prints it;
//  - other_cpu_share (overall and per format): the share of all CPUs other
//    processes used meanwhile. ggml's threads spin at every node's barrier, so
//    with the cores shared the rates collapse; above ~0.1 they are not this
//    machine's.
// Output: {"threads", "matvec": [{"type","k","n","weights_per_s","flops_per_s",
// "bytes_per_s", ...}], "op_overhead_s", "attention": {...}, "ggml_system_info", ...}.
// Takes ~10-30 s with the defaults on two cores. Throws std::runtime_error
// when ggml cannot allocate or compute.
nlohmann::json ProbeKernels(const KernelProbeOptions& o);

}  // namespace lifeline::measure
