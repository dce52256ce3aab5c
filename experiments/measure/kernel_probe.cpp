#include "experiments/measure/kernel_probe.hpp"

#include "experiments/measure/cpu_share.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"

namespace lifeline::measure {
namespace {

using nlohmann::json;

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kK = 4096;        // input length of every matrix-vector product
constexpr int64_t kMaxN = 4096;     // rows per matrix (a 4096 x 4096 projection)
constexpr int kOverheadOps = 2000;  // chained adds timed for the per-operator overhead
constexpr int64_t kOverheadElems = 64;
constexpr int64_t kHotBytes = 8 * kMiB;  // weights of the cache-resident product

struct CtxFree {
  void operator()(ggml_context* c) const { ggml_free(c); }
};
struct BufFree {
  void operator()(ggml_backend_buffer* b) const { ggml_backend_buffer_free(b); }
};
using CtxPtr = std::unique_ptr<ggml_context, CtxFree>;
using BufPtr = std::unique_ptr<ggml_backend_buffer, BufFree>;


// A metadata-only context (tensors are placed in backend buffers later) with
// room for `n_tensors` tensors and a graph of `graph_nodes` nodes.
CtxPtr MetaContext(size_t n_tensors, size_t graph_nodes) {
  ggml_init_params p{};
  p.mem_size =
      ggml_tensor_overhead() * n_tensors + (graph_nodes ? ggml_graph_overhead_custom(graph_nodes, false) : 0) + 4096;
  p.mem_buffer = nullptr;
  p.no_alloc = true;
  ggml_context* c = ggml_init(p);
  if (!c) throw std::runtime_error("ggml_init failed");
  return CtxPtr(c);
}

BufPtr Alloc(ggml_context* ctx, ggml_backend_buffer_type_t buft, const char* what) {
  BufPtr b(ggml_backend_alloc_ctx_tensors_from_buft(ctx, buft));
  if (!b) throw std::runtime_error(std::string("ggml could not allocate the ") + what);
  return b;
}

// The CPU backend with a ggml thread pool attached, as llama.cpp's context
// runs it (llama_attach_threadpool).
class CpuBackend {
 public:
  explicit CpuBackend(int threads) {
    ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    pool_ = ggml_threadpool_new(&tpp);
    if (!pool_) throw std::runtime_error("ggml_threadpool_new failed for " + std::to_string(threads) + " threads");
    backend_ = ggml_backend_cpu_init();
    if (!backend_) {
      ggml_threadpool_free(pool_);
      throw std::runtime_error("ggml_backend_cpu_init failed");
    }
    ggml_backend_cpu_set_n_threads(backend_, threads);
    ggml_backend_cpu_set_threadpool(backend_, pool_);
  }
  ~CpuBackend() {
    ggml_backend_free(backend_);
    ggml_threadpool_free(pool_);
  }
  CpuBackend(const CpuBackend&) = delete;
  CpuBackend& operator=(const CpuBackend&) = delete;

  ggml_backend_t get() const { return backend_; }
  ggml_backend_dev_t device() const { return ggml_backend_get_device(backend_); }
  ggml_backend_buffer_type_t cpu_buft() const { return ggml_backend_get_default_buffer_type(backend_); }

  void Compute(ggml_cgraph* g) const {
    if (ggml_backend_graph_compute(backend_, g) != GGML_STATUS_SUCCESS)
      throw std::runtime_error("ggml_backend_graph_compute failed");
  }
  // Best wall time of `reps` computes of `g`, after one untimed warm-up.
  double Best(ggml_cgraph* g, int reps) const {
    Compute(g);
    double best = 1e300;
    for (int r = 0; r < reps; ++r) {
      const double t0 = NowSeconds();
      Compute(g);
      best = std::min(best, NowSeconds() - t0);
    }
    return best;
  }

 private:
  ggml_threadpool* pool_ = nullptr;
  ggml_backend_t backend_ = nullptr;
};

// Buffer types llama.cpp tries for a CPU weight, in its order
// (make_cpu_buft_list): the CPU device's extra buffer types (CPU_REPACK: the
// weights interleaved for the gemv/gemm kernels of this CPU), then the plain
// CPU buffer.
std::vector<ggml_backend_buffer_type_t> WeightBufts(const CpuBackend& be) {
  std::vector<ggml_backend_buffer_type_t> r;
  ggml_backend_dev_t dev = be.device();
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  auto extra = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
      ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"));
  if (extra) {
    for (ggml_backend_buffer_type_t* b = extra(dev); b && *b; ++b) r.push_back(*b);
  }
  r.push_back(be.cpu_buft());
  return r;
}

// llama.cpp's weight_buft_supported for a matrix multiplication: can the
// device run mul_mat with a weight of this type and shape held in `buft`?
bool MatmulSupported(const CpuBackend& be, ggml_backend_buffer_type_t buft, ggml_type type, int64_t k, int64_t n) {
  CtxPtr ctx = MetaContext(8, 0);
  ggml_tensor* w = ggml_new_tensor_2d(ctx.get(), type, k, n);
  ggml_tensor* b = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, k, 512);
  ggml_tensor* op = ggml_mul_mat(ctx.get(), w, b);
  w->buffer = ggml_backend_buft_alloc_buffer(buft, 0);  // a dummy buffer, so supports_op sees the buffer type
  const bool ok = ggml_backend_dev_supports_op(be.device(), op);
  ggml_backend_buffer_free(w->buffer);
  w->buffer = nullptr;
  return ok;
}

ggml_backend_buffer_type_t SelectWeightBuft(const CpuBackend& be, ggml_type type, int64_t k, int64_t n) {
  for (ggml_backend_buffer_type_t b : WeightBufts(be)) {
    if (MatmulSupported(be, b, type, k, n)) return b;
  }
  return be.cpu_buft();
}

std::vector<float> Uniform(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);  // zero mean
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// `n` rows of `k` weights stored as `type`: a few distinct rows quantized with
// ggml_quantize_chunk and repeated (the rate does not depend on the values,
// and quantizing k-quants is slow).
std::vector<uint8_t> StoredRows(ggml_type type, int64_t k, int64_t n, uint64_t seed) {
  const int64_t distinct = std::min<int64_t>(n, 64);
  const std::vector<float> src = Uniform(static_cast<size_t>(distinct * k), seed);
  const size_t row = ggml_row_size(type, k);
  std::vector<uint8_t> out(static_cast<size_t>(n) * row);
  ggml_quantize_chunk(type, src.data(), out.data(), 0, distinct, k, nullptr);
  for (int64_t r = distinct; r < n; ++r)
    std::memcpy(out.data() + static_cast<size_t>(r) * row, out.data() + static_cast<size_t>(r % distinct) * row, row);
  return out;
}

struct MatvecTiming {
  double seconds = 0;  // best time of one pass (all nodes)
  double weights = 0;  // weights multiplied per pass
  double bytes = 0;    // storage bytes of those weights (ggml_row_size), per pass
};

// Times a graph of `nodes` batch-1 products y = W_i x over `matrices` distinct
// [k x n] weights in `buft` (node i uses matrix i % matrices).
MatvecTiming TimeMatvec(const CpuBackend& be, ggml_type type, ggml_backend_buffer_type_t buft, int64_t k, int64_t n,
                        int64_t matrices, int64_t nodes, const std::vector<uint8_t>& rows, int reps) {
  CtxPtr wctx = MetaContext(static_cast<size_t>(matrices), 0);
  std::vector<ggml_tensor*> ws;
  for (int64_t i = 0; i < matrices; ++i) ws.push_back(ggml_new_tensor_2d(wctx.get(), type, k, n));
  BufPtr wbuf = Alloc(wctx.get(), buft, "weight matrices");
  ggml_backend_buffer_set_usage(wbuf.get(), GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
  for (ggml_tensor* w : ws) ggml_backend_tensor_set(w, rows.data(), 0, ggml_nbytes(w));  // repacks in CPU_REPACK

  CtxPtr actx = MetaContext(static_cast<size_t>(nodes) + 4, static_cast<size_t>(nodes) + 8);
  ggml_tensor* x = ggml_new_tensor_1d(actx.get(), GGML_TYPE_F32, k);
  ggml_cgraph* g = ggml_new_graph_custom(actx.get(), static_cast<size_t>(nodes) + 8, false);
  for (int64_t i = 0; i < nodes; ++i)
    ggml_build_forward_expand(g, ggml_mul_mat(actx.get(), ws[static_cast<size_t>(i % matrices)], x));
  BufPtr abuf = Alloc(actx.get(), be.cpu_buft(), "activations");
  const std::vector<float> xv = Uniform(static_cast<size_t>(k), 7);
  ggml_backend_tensor_set(x, xv.data(), 0, ggml_nbytes(x));

  MatvecTiming t;
  t.seconds = be.Best(g, reps);
  t.weights = static_cast<double>(nodes) * static_cast<double>(k) * static_cast<double>(n);
  t.bytes = static_cast<double>(nodes) * static_cast<double>(n) * static_cast<double>(ggml_row_size(type, k));
  return t;
}

json Rates(const MatvecTiming& t) {
  return {{"weights_per_s", t.weights / t.seconds},
          {"flops_per_s", 2.0 * t.weights / t.seconds},
          {"bytes_per_s", t.bytes / t.seconds},
          {"seconds_per_pass", t.seconds},
          {"bytes_per_pass", t.bytes}};
}

int64_t CacheBytes(int name, int64_t fallback) {
  const long v = sysconf(name);
  return v > 0 ? static_cast<int64_t>(v) : fallback;
}

json ProbeMatvec(const CpuBackend& be, ggml_type type, const char* name, const KernelProbeOptions& o, uint64_t seed) {
  const int64_t row = static_cast<int64_t>(ggml_row_size(type, kK));
  // Streaming: ~matrix_mb MiB over `matrices` distinct [K x n] weights.
  const int64_t rows_total = std::max<int64_t>(64, static_cast<int64_t>(o.matrix_mb) * kMiB / row);
  const int64_t n = std::min(kMaxN, rows_total / 64 * 64);
  const int64_t matrices = std::max<int64_t>(1, rows_total / n);
  ggml_backend_buffer_type_t buft = SelectWeightBuft(be, type, kK, n);
  const std::vector<uint8_t> rows = StoredRows(type, kK, n, seed);
  const CpuSample c0 = SampleCpu();
  const MatvecTiming stream = TimeMatvec(be, type, buft, kK, n, matrices, matrices, rows, o.reps);

  json j = Rates(stream);
  j["type"] = name;
  j["ggml_type"] = ggml_type_name(type);
  j["k"] = kK;
  j["n"] = n;
  j["matrices"] = matrices;
  j["buffer_type"] = ggml_backend_buft_name(buft);
  j["other_cpu_share"] = SharesBetween(c0, SampleCpu()).other;

  // Hot: one ~8 MiB matrix (within the last-level cache of current desktop and
  // server CPUs) used by many nodes, so its weights come from cache: the rate
  // with DRAM out of the way.
  const int64_t hot_rows = std::clamp<int64_t>(kHotBytes / row / 8 * 8, 8, n);
  ggml_backend_buffer_type_t hot_buft = SelectWeightBuft(be, type, kK, hot_rows);
  const int64_t hot_nodes = std::clamp<int64_t>(32 * kMiB / (hot_rows * row), 8, 4096);
  const std::vector<uint8_t> hot_src(rows.begin(), rows.begin() + hot_rows * row);
  const MatvecTiming hot = TimeMatvec(be, type, hot_buft, kK, hot_rows, 1, hot_nodes, hot_src, o.reps);
  j["hot"] = Rates(hot);
  j["hot"]["n"] = hot_rows;
  j["hot"]["buffer_type"] = ggml_backend_buft_name(hot_buft);

  // Where llama.cpp repacks, the same product on the plain CPU buffer.
  if (buft != be.cpu_buft()) {
    const MatvecTiming plain = TimeMatvec(be, type, be.cpu_buft(), kK, n, matrices, matrices, rows, o.reps);
    j["plain_cpu_buffer"] = Rates(plain);
  }
  return j;
}

double ProbeOpOverhead(const CpuBackend& be, int reps) {
  CtxPtr ctx = MetaContext(kOverheadOps + 8, kOverheadOps + 16);
  ggml_tensor* a = ggml_new_tensor_1d(ctx.get(), GGML_TYPE_F32, kOverheadElems);
  ggml_tensor* b = ggml_new_tensor_1d(ctx.get(), GGML_TYPE_F32, kOverheadElems);
  ggml_tensor* cur = a;
  for (int i = 0; i < kOverheadOps; ++i) cur = ggml_add(ctx.get(), cur, b);  // a chain: each node waits for the last
  ggml_cgraph* g = ggml_new_graph_custom(ctx.get(), kOverheadOps + 16, false);
  ggml_build_forward_expand(g, cur);
  BufPtr buf = Alloc(ctx.get(), be.cpu_buft(), "overhead graph");
  const std::vector<float> v = Uniform(kOverheadElems, 3);
  ggml_backend_tensor_set(a, v.data(), 0, ggml_nbytes(a));
  ggml_backend_tensor_set(b, v.data(), 0, ggml_nbytes(b));
  return be.Best(g, std::max(3, reps)) / kOverheadOps;
}

// `fused`: ggml_flash_attn_ext (llama.cpp with flash attention on); otherwise
// the graph llama.cpp builds without it: KQ = K q (per KV head, broadcast to
// its query heads), softmax, then V^T (stored transposed) times the
// probabilities.
json ProbeAttention(const CpuBackend& be, const KernelProbeOptions& o, bool fused) {
  constexpr int64_t kHeads = 16, kKvHeads = 8, kDim = 128, kCtx = 4096;
  const int64_t kv_layer_bytes = 2 * kCtx * kKvHeads * kDim * 2;  // K and V, f16
  // Several layers' K/V (~matrix_mb / 2 MiB in all), one query each, so the
  // cache is read from memory as in a decode step.
  const int64_t layers = std::clamp<int64_t>(static_cast<int64_t>(o.matrix_mb) * kMiB / 2 / kv_layer_bytes, 1, 16);
  CtxPtr ctx = MetaContext(static_cast<size_t>(6 * layers + 8), static_cast<size_t>(4 * layers) + 16);
  ggml_tensor* q = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F32, kDim, 1, kHeads);
  std::vector<ggml_tensor*> kv;
  ggml_cgraph* g = ggml_new_graph_custom(ctx.get(), static_cast<size_t>(4 * layers) + 16, false);
  const float scale = 1.0f / std::sqrt(static_cast<float>(kDim));
  for (int64_t l = 0; l < layers; ++l) {
    ggml_tensor* k = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F16, kDim, kCtx, kKvHeads);
    ggml_tensor* v = fused ? ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F16, kDim, kCtx, kKvHeads)
                           : ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F16, kCtx, kDim, kKvHeads);
    kv.push_back(k);
    kv.push_back(v);
    if (fused) {
      ggml_build_forward_expand(g, ggml_flash_attn_ext(ctx.get(), q, k, v, nullptr, scale, 0.0f, 0.0f));
    } else {
      ggml_tensor* kq = ggml_mul_mat(ctx.get(), k, q);                       // (ctx, 1, heads)
      ggml_tensor* p = ggml_soft_max_ext(ctx.get(), kq, nullptr, scale, 0.0f);
      ggml_build_forward_expand(g, ggml_mul_mat(ctx.get(), v, p));          // (dim, 1, heads)
    }
  }
  BufPtr buf = Alloc(ctx.get(), be.cpu_buft(), "attention K/V");
  const std::vector<float> kvf = Uniform(static_cast<size_t>(kDim * kCtx * kKvHeads), 5);
  std::vector<ggml_fp16_t> kvh(kvf.size());
  ggml_fp32_to_fp16_row(kvf.data(), kvh.data(), static_cast<int64_t>(kvf.size()));
  for (ggml_tensor* t : kv) ggml_backend_tensor_set(t, kvh.data(), 0, ggml_nbytes(t));
  const std::vector<float> qv = Uniform(static_cast<size_t>(kDim * kHeads), 6);
  ggml_backend_tensor_set(q, qv.data(), 0, ggml_nbytes(q));

  const double best = be.Best(g, o.reps);
  const double head_tokens = static_cast<double>(layers * kHeads * kCtx);
  return {{"kernel", fused ? "flash_attn_ext" : "mul_mat + soft_max + mul_mat"},
          {"n_head", kHeads},
          {"n_head_kv", kKvHeads},
          {"head_dim", kDim},
          {"context_tokens", kCtx},
          {"kv_type", "f16"},
          {"layers", layers},
          {"seconds_per_pass", best},
          {"s_per_head_token", best / head_tokens},
          // QK^T and PV: 2 * head_dim flops each per (head, token)
          {"flops_per_s", head_tokens * 4.0 * kDim / best},
          {"kv_bytes_per_s", static_cast<double>(layers * kv_layer_bytes) / best}};
}

std::string SystemInfo(const CpuBackend& be) {
  std::string s = "CPU : ";
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(be.device());
  auto features = reinterpret_cast<ggml_backend_get_features_t>(
      ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"));
  if (features) {
    for (ggml_backend_feature* f = features(reg); f && f->name; ++f)
      s += std::string(f->name) + " = " + f->value + " | ";
  }
  return s;
}

}  // namespace

json ProbeKernels(const KernelProbeOptions& o) {
  if (o.threads < 1) throw std::runtime_error("kernel probe: threads must be >= 1");
  if (o.matrix_mb < 1) throw std::runtime_error("kernel probe: matrix_mb must be >= 1");
  if (o.reps < 1) throw std::runtime_error("kernel probe: reps must be >= 1");
  ggml_cpu_init();
  const CpuSample c0 = SampleCpu();
  CpuBackend be(o.threads);

  struct Format {
    ggml_type type;
    const char* name;  // lifeline's name (hwspec efficiency.linear_compute_<name>)
  };
  const Format formats[] = {{GGML_TYPE_F32, "f32"},   {GGML_TYPE_F16, "f16"},   {GGML_TYPE_Q8_0, "q8_0"},
                            {GGML_TYPE_Q4_0, "q4_0"}, {GGML_TYPE_Q4_K, "q4_k"}, {GGML_TYPE_Q3_K, "q3_k"},
                            {GGML_TYPE_Q2_K, "q2_k"}};
  json out;
  out["threads"] = o.threads;
  out["matrix_mb"] = o.matrix_mb;
  out["reps"] = o.reps;
  json mv = json::array();
  uint64_t seed = 11;
  for (const Format& f : formats) mv.push_back(ProbeMatvec(be, f.type, f.name, o, seed++));
  out["matvec"] = mv;
  out["op_overhead_s"] = ProbeOpOverhead(be, o.reps);
  out["op_overhead"] = {{"op", "add"}, {"ops", kOverheadOps}, {"elements", kOverheadElems}};
  out["attention"] = ProbeAttention(be, o, /*fused=*/true);
  out["attention_unfused"] = ProbeAttention(be, o, /*fused=*/false);
  out["ggml_system_info"] = SystemInfo(be);
  out["ggml_version"] = ggml_version();
  out["ggml_commit"] = ggml_commit();
  out["l2_cache_bytes"] = CacheBytes(_SC_LEVEL2_CACHE_SIZE, 0);
  out["l3_cache_bytes"] = CacheBytes(_SC_LEVEL3_CACHE_SIZE, 0);
  const CpuSample c1 = SampleCpu();
  out["wall_s"] = c1.wall_s - c0.wall_s;
  // Other processes' share of all CPUs over the whole run (CPU time is
  // counted in clock ticks: noise of ~0.01 / wall_s).
  out["other_cpu_share"] = SharesBetween(c0, c1).other;
  return out;
}

}  // namespace lifeline::measure
