// lifeline-llama: the small native program through which lifeline talks to
// llama.cpp (built from the source node-llama-cpp ships, see
// scripts/setup-llama-cpp.sh). It prints one JSON document on stdout; errors
// go to stderr with a non-zero exit. `lifeline measure`, `lifeline validate`,
// `lifeline probe` and the tests run it as a subprocess, so neither LibTorch
// nor llama.cpp is ever linked into `lifeline` itself.
//
//   lifeline-llama info   MODEL.gguf                      metadata, tensors, llama.cpp's view of the model
//   lifeline-llama logits MODEL.gguf --tokens 1,2,3 [--generate N]
//   lifeline-llama bench  MODEL.gguf --depths 512,2048 --gen 64 --reps 3 [--prompt 512] [--fill synth|prefill]
//   lifeline-llama kernels [--threads T]                  ggml kernel rates (matvec per type, per-op overhead)
//
// Timing follows llama-bench: a ggml thread pool attached to the context
// (without one llama.cpp starts worker threads for every token), one token
// per llama_decode, llama_synchronize after each. The context is filled to
// the depth once per depth and restored before every repetition; with
// `--fill synth` the KV cache contents are synthesised (random fp16 values in
// llama.cpp's own sequence-state layout) instead of computed by a prefill,
// since decode time does not depend on the values but an 8k prefill of a 3B
// model takes minutes on two cores. `--fill prefill` computes them for real.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "experiments/measure/cpu_share.hpp"
#include "experiments/measure/kernel_probe.hpp"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"

namespace {

using nlohmann::json;

struct DriverError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

double NowS() { return lifeline::measure::NowSeconds(); }

json CpuShare(const lifeline::measure::CpuSample& a, const lifeline::measure::CpuSample& b) {
  const auto s = lifeline::measure::SharesBetween(a, b);
  return json{{"other_cpu_share", s.other}, {"steal_share", s.steal}, {"self_cpu_share", s.self}};
}

std::vector<int> ParseIntList(const std::string& s, const char* what) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used != item.size() || v < 0 || v > (1L << 30)) {
      throw DriverError(std::string("--") + what + ": '" + item + "' is not a non-negative integer");
    }
    out.push_back(static_cast<int>(v));
  }
  return out;
}

void QuietLog(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

struct ModelHolder {
  llama_model* model = nullptr;
  ~ModelHolder() {
    if (model) llama_model_free(model);
  }
};
struct ContextHolder {
  llama_context* ctx = nullptr;
  ggml_threadpool* pool = nullptr;
  ~ContextHolder() {
    if (ctx) llama_free(ctx);
    if (pool) ggml_threadpool_free(pool);
  }
};

llama_model* LoadModel(const std::string& path, int gpu_layers) {
  if (FILE* f = fopen(path.c_str(), "rb")) {
    fclose(f);
  } else {
    throw DriverError("cannot open model file " + path);
  }
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = gpu_layers;
  mp.load_mode = LLAMA_LOAD_MODE_NONE;  // no mmap: page reclaim stalls timing on small VMs
  llama_model* m = llama_model_load_from_file(path.c_str(), mp);
  if (!m) throw DriverError("llama.cpp could not load " + path + " (run with LIFELINE_LLAMA_VERBOSE=1 for its log)");
  return m;
}

void MakeContext(ContextHolder& h, llama_model* model, int n_ctx, int n_batch, int threads, bool flash_attn,
                 ggml_type kv_type = GGML_TYPE_F16) {
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n_ctx);
  cp.n_batch = static_cast<uint32_t>(n_batch);
  cp.n_ubatch = static_cast<uint32_t>(std::min(n_batch, 512));
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.flash_attn_type = flash_attn ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.no_perf = true;
  cp.type_k = kv_type;
  cp.type_v = kv_type;
  h.ctx = llama_init_from_model(model, cp);
  if (!h.ctx) throw DriverError("llama.cpp could not create a context of " + std::to_string(n_ctx) + " tokens");
  ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
  h.pool = ggml_threadpool_new(&tpp);
  if (!h.pool) throw DriverError("could not create a ggml thread pool of " + std::to_string(threads) + " threads");
  llama_attach_threadpool(h.ctx, h.pool, nullptr);
}

void Decode(llama_context* ctx, llama_batch batch, const char* what) {
  const int rc = llama_decode(ctx, batch);
  if (rc != 0) throw DriverError(std::string("llama_decode failed during ") + what + " (code " + std::to_string(rc) + ")");
  llama_synchronize(ctx);
}

// ---------------------------------------------------------------- info
json Info(const std::string& path, int gpu_layers) {
  json out;
  ggml_context* meta = nullptr;
  gguf_init_params gp{true, &meta};
  gguf_context* g = gguf_init_from_file(path.c_str(), gp);
  if (!g) throw DriverError("ggml's GGUF reader rejected " + path);
  out["gguf_version"] = gguf_get_version(g);
  out["alignment"] = gguf_get_alignment(g);
  out["data_offset"] = gguf_get_data_offset(g);
  json kv = json::object();
  for (int64_t i = 0; i < gguf_get_n_kv(g); ++i) {
    const char* key = gguf_get_key(g, i);
    switch (gguf_get_kv_type(g, i)) {
      case GGUF_TYPE_STRING: kv[key] = gguf_get_val_str(g, i); break;
      case GGUF_TYPE_UINT32: kv[key] = gguf_get_val_u32(g, i); break;
      case GGUF_TYPE_INT32: kv[key] = gguf_get_val_i32(g, i); break;
      case GGUF_TYPE_FLOAT32: kv[key] = gguf_get_val_f32(g, i); break;
      case GGUF_TYPE_BOOL: kv[key] = gguf_get_val_bool(g, i); break;
      case GGUF_TYPE_ARRAY: kv[key] = json{{"array_of", gguf_type_name(gguf_get_arr_type(g, i))}, {"n", gguf_get_arr_n(g, i)}}; break;
      default: kv[key] = gguf_type_name(gguf_get_kv_type(g, i)); break;
    }
  }
  out["metadata"] = kv;
  json tensors = json::array();
  for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
    const char* name = gguf_get_tensor_name(g, i);
    ggml_tensor* t = ggml_get_tensor(meta, name);
    json shape = json::array();
    for (int d = 0; d < ggml_n_dims(t); ++d) shape.push_back(t->ne[d]);
    tensors.push_back({{"name", name}, {"type", ggml_type_name(gguf_get_tensor_type(g, i))},
                       {"type_id", static_cast<int>(gguf_get_tensor_type(g, i))}, {"shape", shape},
                       {"offset", gguf_get_tensor_offset(g, i)}, {"bytes", gguf_get_tensor_size(g, i)}});
  }
  out["tensors"] = tensors;
  gguf_free(g);
  ggml_free(meta);

  ModelHolder m;
  m.model = LoadModel(path, gpu_layers);
  char desc[256];
  llama_model_desc(m.model, desc, sizeof(desc));
  out["llama"] = {{"desc", desc},
                  {"n_params", llama_model_n_params(m.model)},
                  {"size_bytes", llama_model_size(m.model)},
                  {"n_layer", llama_model_n_layer(m.model)},
                  {"n_embd", llama_model_n_embd(m.model)},
                  {"n_head", llama_model_n_head(m.model)},
                  {"n_vocab", llama_vocab_n_tokens(llama_model_get_vocab(m.model))},
                  {"n_ctx_train", llama_model_n_ctx_train(m.model)}};
  return out;
}

// ---------------------------------------------------------------- logits
json Logits(const std::string& path, const std::vector<int>& tokens, int generate, int threads, int gpu_layers,
            ggml_type kv_type) {
  if (tokens.empty()) throw DriverError("--tokens: give at least one token id");
  ModelHolder m;
  m.model = LoadModel(path, gpu_layers);
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(m.model));
  for (int t : tokens) {
    if (t >= n_vocab) throw DriverError("--tokens: id " + std::to_string(t) + " is outside the vocabulary of " + std::to_string(n_vocab));
  }
  const int n_ctx = static_cast<int>(tokens.size()) + generate + 8;
  ContextHolder h;
  MakeContext(h, m.model, n_ctx, std::max<int>(static_cast<int>(tokens.size()), 8), threads, false, kv_type);
  llama_batch b = llama_batch_init(static_cast<int32_t>(tokens.size()), 0, 1);
  for (size_t i = 0; i < tokens.size(); ++i) {
    b.token[i] = tokens[i];
    b.pos[i] = static_cast<llama_pos>(i);
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = 0;
    b.logits[i] = 1;
  }
  b.n_tokens = static_cast<int32_t>(tokens.size());
  try {
    Decode(h.ctx, b, "the prompt");
  } catch (...) {
    llama_batch_free(b);
    throw;
  }
  llama_batch_free(b);
  json logits = json::array();
  std::vector<float> last;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const float* row = llama_get_logits_ith(h.ctx, static_cast<int32_t>(i));
    logits.push_back(std::vector<float>(row, row + n_vocab));
    if (i + 1 == tokens.size()) last.assign(row, row + n_vocab);
  }
  json generated = json::array();
  for (int i = 0; i < generate; ++i) {
    llama_token next = static_cast<llama_token>(std::max_element(last.begin(), last.end()) - last.begin());
    generated.push_back(next);
    llama_batch one = llama_batch_get_one(&next, 1);
    Decode(h.ctx, one, "greedy generation");
    const float* row = llama_get_logits_ith(h.ctx, -1);
    last.assign(row, row + n_vocab);
  }
  return json{{"n_vocab", n_vocab}, {"tokens", tokens}, {"kv_type", ggml_type_name(kv_type)}, {"logits", logits},
              {"generated", generated}};
}

// ---------------------------------------------------------------- KV synthesis
// llama.cpp's sequence state for a plain KV cache (llama_context::state_seq_get_data,
// then llama_kv_cache::state_write):
//   u32 magic; i32 seq_id; u32 n_stream; per stream: u32 cell_count; per cell: i32 pos, u32 n_seq_id, i32 seq_id[n];
//   u32 v_trans; u32 n_layer; per layer: i32 k_type, u64 k_row_bytes, rows;
//   v not transposed: per layer i32 v_type, u64 v_row_bytes, rows;
//   v transposed: per layer i32 v_type, u32 v_elem_bytes, u32 n_embd_v, then n_embd_v runs of cells.
// The layout is read from a real one-token state first, and the parse must
// consume it exactly, so a llama.cpp whose layout differs is refused rather
// than fed garbage.
struct KvLayout {
  uint32_t magic = 0;
  uint32_t v_trans = 0;
  std::vector<int32_t> k_type, v_type;
  std::vector<uint64_t> k_row;      // bytes per cell per layer
  std::vector<uint32_t> v_el, v_n;  // transposed V: element bytes and rows
  std::vector<uint64_t> v_row;      // non-transposed V: bytes per cell
};

class Reader {
 public:
  Reader(const std::vector<uint8_t>& b) : b_(b) {}
  template <typename T>
  T Get() {
    if (off_ + sizeof(T) > b_.size()) throw DriverError("llama.cpp state layout not recognised (short read)");
    T v;
    std::memcpy(&v, b_.data() + off_, sizeof(T));
    off_ += sizeof(T);
    return v;
  }
  void Skip(uint64_t n) {
    if (off_ + n > b_.size()) throw DriverError("llama.cpp state layout not recognised (short read)");
    off_ += n;
  }
  bool AtEnd() const { return off_ == b_.size(); }

 private:
  const std::vector<uint8_t>& b_;
  size_t off_ = 0;
};

KvLayout ParseOneCellState(const std::vector<uint8_t>& state) {
  Reader r(state);
  KvLayout L;
  L.magic = r.Get<uint32_t>();
  if (r.Get<int32_t>() != 0) throw DriverError("llama.cpp state layout not recognised (sequence id)");
  if (r.Get<uint32_t>() != 1) throw DriverError("llama.cpp state: more than one KV stream (use --fill prefill)");
  if (r.Get<uint32_t>() != 1) throw DriverError("llama.cpp state: expected one cell after one token (use --fill prefill)");
  r.Get<int32_t>();  // pos
  const uint32_t n_seq = r.Get<uint32_t>();
  if (n_seq != 1) throw DriverError("llama.cpp state layout not recognised (cell metadata)");
  r.Get<int32_t>();  // seq id
  L.v_trans = r.Get<uint32_t>();
  const uint32_t n_layer = r.Get<uint32_t>();
  if (n_layer == 0 || n_layer > 4096) throw DriverError("llama.cpp state layout not recognised (layer count)");
  for (uint32_t l = 0; l < n_layer; ++l) {
    L.k_type.push_back(r.Get<int32_t>());
    L.k_row.push_back(r.Get<uint64_t>());
    r.Skip(L.k_row.back());
  }
  for (uint32_t l = 0; l < n_layer; ++l) {
    L.v_type.push_back(r.Get<int32_t>());
    if (!L.v_trans) {
      L.v_row.push_back(r.Get<uint64_t>());
      r.Skip(L.v_row.back());
    } else {
      L.v_el.push_back(r.Get<uint32_t>());
      L.v_n.push_back(r.Get<uint32_t>());
      r.Skip(static_cast<uint64_t>(L.v_el.back()) * L.v_n.back());
    }
  }
  if (!r.AtEnd()) throw DriverError("llama.cpp state layout not recognised (trailing bytes; use --fill prefill)");
  for (int32_t t : L.k_type) {
    if (t != GGML_TYPE_F16) throw DriverError("--fill synth supports an f16 KV cache only");
  }
  return L;
}

// Random fp16 payload in [-1, 1): a 64 KiB table tiled with a stride, so
// gigabytes are written at memcpy speed.
class HalfNoise {
 public:
  explicit HalfNoise(uint64_t seed) : table_(32768) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& h : table_) h = ggml_fp32_to_fp16(u(rng));
  }
  void Fill(uint8_t* dst, uint64_t bytes) {
    const uint8_t* src = reinterpret_cast<const uint8_t*>(table_.data());
    const uint64_t tb = table_.size() * sizeof(ggml_fp16_t);
    while (bytes > 0) {
      const uint64_t start = (off_ * 2) % tb;
      const uint64_t n = std::min<uint64_t>(bytes, tb - start);
      std::memcpy(dst, src + start, n);
      dst += n;
      bytes -= n;
      off_ += 997;  // a new phase each chunk
    }
  }

 private:
  std::vector<ggml_fp16_t> table_;
  uint64_t off_ = 0;
};

std::vector<uint8_t> SynthesiseState(const KvLayout& L, uint32_t cells, uint64_t seed) {
  uint64_t size = 8 + 4 + 4 + cells * 12ull + 8;
  for (size_t l = 0; l < L.k_row.size(); ++l) size += 12 + L.k_row[l] * cells;
  for (size_t l = 0; l < L.v_type.size(); ++l) {
    size += L.v_trans ? 12 + static_cast<uint64_t>(L.v_el[l]) * L.v_n[l] * cells : 12 + L.v_row[l] * cells;
  }
  std::vector<uint8_t> out(size);
  uint8_t* p = out.data();
  auto put = [&](const void* v, size_t n) {
    std::memcpy(p, v, n);
    p += n;
  };
  HalfNoise noise(seed);
  const uint32_t one = 1;
  const int32_t seq0 = 0;
  put(&L.magic, 4);
  put(&seq0, 4);
  put(&one, 4);
  put(&cells, 4);
  for (uint32_t c = 0; c < cells; ++c) {
    const int32_t pos = static_cast<int32_t>(c), seq = 0;
    put(&pos, 4);
    put(&one, 4);
    put(&seq, 4);
  }
  const uint32_t n_layer = static_cast<uint32_t>(L.k_type.size());
  put(&L.v_trans, 4);
  put(&n_layer, 4);
  for (size_t l = 0; l < n_layer; ++l) {
    put(&L.k_type[l], 4);
    put(&L.k_row[l], 8);
    noise.Fill(p, L.k_row[l] * cells);
    p += L.k_row[l] * cells;
  }
  for (size_t l = 0; l < n_layer; ++l) {
    put(&L.v_type[l], 4);
    if (!L.v_trans) {
      put(&L.v_row[l], 8);
      noise.Fill(p, L.v_row[l] * cells);
      p += L.v_row[l] * cells;
    } else {
      put(&L.v_el[l], 4);
      put(&L.v_n[l], 4);
      const uint64_t n = static_cast<uint64_t>(L.v_el[l]) * L.v_n[l] * cells;
      noise.Fill(p, n);
      p += n;
    }
  }
  if (static_cast<uint64_t>(p - out.data()) != size) throw std::logic_error("state synthesis size mismatch");
  return out;
}

// ---------------------------------------------------------------- bench
struct BenchOptions {
  std::vector<int> depths{0};
  int gen = 64;
  int reps = 3;
  int warmup = 4;
  int prompt = 0;  // prefill test length; 0 = none
  int threads = 2;
  int gpu_layers = 0;
  bool flash_attn = true;
  std::string fill = "synth";
  uint64_t seed = 1;
};

std::vector<uint8_t> GetState(llama_context* ctx) {
  std::vector<uint8_t> s(llama_state_seq_get_size(ctx, 0));
  const size_t n = llama_state_seq_get_data(ctx, s.data(), s.size(), 0);
  s.resize(n);
  return s;
}

void SetState(llama_context* ctx, const std::vector<uint8_t>& s, const char* what) {
  llama_memory_clear(llama_get_memory(ctx), true);
  if (s.empty()) return;
  if (llama_state_seq_set_data(ctx, s.data(), s.size(), 0) == 0) {
    throw DriverError(std::string("llama.cpp refused the ") + what + " KV state");
  }
}

json Bench(const std::string& path, const BenchOptions& o) {
  if (o.gen < 1) throw DriverError("--gen must be at least 1");
  if (o.reps < 1) throw DriverError("--reps must be at least 1");
  if (o.fill != "synth" && o.fill != "prefill") throw DriverError("--fill: 'synth' or 'prefill', not '" + o.fill + "'");
  ModelHolder m;
  const double t_load0 = NowS();
  m.model = LoadModel(path, o.gpu_layers);
  const double load_s = NowS() - t_load0;
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(m.model));
  const int max_depth = o.depths.empty() ? 0 : *std::max_element(o.depths.begin(), o.depths.end());
  const int n_ctx = ((std::max(max_depth, o.prompt) + o.gen + o.warmup + 1 + 255) / 256) * 256;
  ContextHolder h;
  MakeContext(h, m.model, n_ctx, std::max(512, std::min(o.prompt, 2048)), o.threads, o.flash_attn);
  std::mt19937 rng(static_cast<uint32_t>(o.seed));
  auto random_token = [&] { return static_cast<llama_token>(rng() % static_cast<uint32_t>(n_vocab)); };

  auto decode_tokens = [&](int n) {  // a batch of n random tokens continuing the sequence
    llama_batch b = llama_batch_init(n, 0, 1);
    const llama_pos start = llama_memory_seq_pos_max(llama_get_memory(h.ctx), 0) + 1;
    for (int i = 0; i < n; ++i) {
      b.token[i] = random_token();
      b.pos[i] = start + i;
      b.n_seq_id[i] = 1;
      b.seq_id[i][0] = 0;
      b.logits[i] = i == n - 1;
    }
    b.n_tokens = n;
    try {
      Decode(h.ctx, b, "a prompt batch");
    } catch (...) {
      llama_batch_free(b);
      throw;
    }
    llama_batch_free(b);
  };

  // The state layout, learnt from one real token.
  KvLayout layout;
  if (o.fill == "synth" && max_depth > 0) {
    llama_memory_clear(llama_get_memory(h.ctx), true);
    decode_tokens(1);
    layout = ParseOneCellState(GetState(h.ctx));
  }

  json depth_results = json::array();
  for (int depth : o.depths) {
    std::vector<uint8_t> state;
    double fill_s = 0;
    const double t0 = NowS();
    llama_memory_clear(llama_get_memory(h.ctx), true);
    if (depth > 0) {
      if (o.fill == "synth") {
        state = SynthesiseState(layout, static_cast<uint32_t>(depth), o.seed + static_cast<uint64_t>(depth));
        SetState(h.ctx, state, "synthesised");
      } else {
        for (int done = 0; done < depth; done += 512) decode_tokens(std::min(512, depth - done));
        state = GetState(h.ctx);
      }
    }
    fill_s = NowS() - t0;
    // Cells the cache holds for the sequence: must equal the depth, however it was filled.
    const int64_t kv_cells = depth > 0 ? llama_memory_seq_pos_max(llama_get_memory(h.ctx), 0) + 1 : 0;
    // Warm-up tokens (caches, thread pool, allocator), then back to the depth.
    for (int i = 0; i < o.warmup; ++i) {
      llama_token t = random_token();
      Decode(h.ctx, llama_batch_get_one(&t, 1), "warm-up");
    }
    json reps = json::array();
    for (int r = 0; r < o.reps; ++r) {
      SetState(h.ctx, state, "restored");
      std::vector<double> token_s;
      token_s.reserve(static_cast<size_t>(o.gen));
      const auto c0 = lifeline::measure::SampleCpu();
      for (int i = 0; i < o.gen; ++i) {
        llama_token t = random_token();
        const double a = NowS();
        Decode(h.ctx, llama_batch_get_one(&t, 1), "decode");
        token_s.push_back(NowS() - a);
      }
      const auto c1 = lifeline::measure::SampleCpu();
      double total = 0;
      for (double s : token_s) total += s;
      json rep = {{"tokens", o.gen}, {"seconds", total}, {"tokens_per_s", o.gen / total}, {"token_s", token_s}};
      rep.update(CpuShare(c0, c1));
      reps.push_back(rep);
    }
    depth_results.push_back(
        {{"depth", depth}, {"fill", o.fill}, {"fill_s", fill_s}, {"kv_cells", kv_cells}, {"reps", reps}});
  }

  json prefill = nullptr;
  if (o.prompt > 0) {
    json reps = json::array();
    for (int r = 0; r < o.reps; ++r) {
      llama_memory_clear(llama_get_memory(h.ctx), true);
      const auto c0 = lifeline::measure::SampleCpu();
      const double a = NowS();
      for (int done = 0; done < o.prompt; done += 2048) decode_tokens(std::min(2048, o.prompt - done));
      const double s = NowS() - a;
      const auto c1 = lifeline::measure::SampleCpu();
      json rep = {{"tokens", o.prompt}, {"seconds", s}, {"tokens_per_s", o.prompt / s}};
      rep.update(CpuShare(c0, c1));
      reps.push_back(rep);
    }
    prefill = {{"prompt", o.prompt}, {"reps", reps}};
  }

  char desc[256];
  llama_model_desc(m.model, desc, sizeof(desc));
  return json{{"model_file", path},
              {"model_desc", desc},
              {"model_size_bytes", llama_model_size(m.model)},
              {"model_n_params", llama_model_n_params(m.model)},
              {"load_s", load_s},
              {"threads", o.threads},
              {"gpu_layers", o.gpu_layers},
              {"flash_attn", o.flash_attn},
              {"n_ctx", n_ctx},
              {"gen", o.gen},
              {"warmup", o.warmup},
              {"seed", o.seed},
              {"system_info", llama_print_system_info()},
              {"decode", depth_results},
              {"prefill", prefill}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lifeline-llama: llama.cpp measurements for lifeline (JSON on stdout)"};
  app.require_subcommand(1);
  std::string model;
  int threads = 2, gpu_layers = 0;
  auto add_common = [&](CLI::App* c, bool needs_model) {
    if (needs_model) c->add_option("model", model, "GGUF file")->required();
    c->add_option("--threads", threads, "CPU threads")->check(CLI::Range(1, 1024));
    c->add_option("--gpu-layers", gpu_layers, "layers offloaded to a GPU (CUDA builds); -1 = all");
  };
  CLI::App* info = app.add_subcommand("info", "GGUF metadata and tensors, and llama.cpp's view of the model");
  add_common(info, true);

  CLI::App* logits = app.add_subcommand("logits", "logits for every position of a token sequence, then greedy tokens");
  add_common(logits, true);
  std::string tokens_s;
  int generate = 0;
  logits->add_option("--tokens", tokens_s, "comma-separated token ids")->required();
  logits->add_option("--generate", generate, "greedy tokens to generate after the prompt")->check(CLI::Range(0, 100000));
  std::string kv = "f16";
  logits->add_option("--kv-type", kv, "KV cache type: f16 (llama.cpp's default) or f32")
      ->check(CLI::IsMember({"f16", "f32"}));

  CLI::App* bench = app.add_subcommand("bench", "time batch-1 decode at context depths (and prefill)");
  add_common(bench, true);
  BenchOptions bo;
  std::string depths_s = "0";
  std::string fa = "on";
  bench->add_option("--depths", depths_s, "comma-separated context depths filled before decoding");
  bench->add_option("--gen", bo.gen, "tokens decoded per repetition")->check(CLI::Range(1, 1 << 20));
  bench->add_option("--reps", bo.reps, "repetitions")->check(CLI::Range(1, 1000));
  bench->add_option("--warmup", bo.warmup, "warm-up tokens before the repetitions")->check(CLI::Range(0, 1000));
  bench->add_option("--prompt", bo.prompt, "also time a prefill of this many tokens")->check(CLI::Range(0, 1 << 20));
  bench->add_option("--fill", bo.fill, "how the context is filled: synth (random KV) or prefill");
  bench->add_option("--flash-attn", fa, "on or off")->check(CLI::IsMember({"on", "off"}));
  bench->add_option("--seed", bo.seed, "seed of the random tokens and KV values");

  CLI::App* kernels = app.add_subcommand("kernels", "ggml kernel rates on this machine");
  add_common(kernels, false);
  lifeline::measure::KernelProbeOptions ko;
  kernels->add_option("--matrix-mb", ko.matrix_mb, "bytes of weights streamed per timed product (MiB)")->check(CLI::Range(1, 65536));
  kernels->add_option("--reps", ko.reps, "repetitions (best kept)")->check(CLI::Range(1, 1000));

  CLI11_PARSE(app, argc, argv);
  if (!getenv("LIFELINE_LLAMA_VERBOSE")) llama_log_set(QuietLog, nullptr);
  llama_backend_init();
  json out;
  try {
    if (info->parsed()) {
      out = Info(model, gpu_layers);
    } else if (logits->parsed()) {
      out = Logits(model, ParseIntList(tokens_s, "tokens"), generate, threads, gpu_layers,
                   kv == "f32" ? GGML_TYPE_F32 : GGML_TYPE_F16);
    } else if (bench->parsed()) {
      bo.depths = ParseIntList(depths_s, "depths");
      if (bo.depths.empty()) bo.depths = {0};
      bo.threads = threads;
      bo.gpu_layers = gpu_layers;
      bo.flash_attn = fa == "on";
      out = Bench(model, bo);
    } else if (kernels->parsed()) {
      ko.threads = threads;
      out = lifeline::measure::ProbeKernels(ko);
    }
  } catch (const std::exception& e) {
    fprintf(stderr, "lifeline-llama: error: %s\n", e.what());
    llama_backend_free();
    return 1;
  }
  llama_backend_free();
  std::cout << out.dump() << "\n";
  return 0;
}
