#include "experiments/measure/gguf_model.hpp"

#include <cmath>
#include <cstring>
#include <exception>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/measure/ggml_quant.hpp"
#include "common/error.hpp"

namespace lifeline::measure {

namespace fs = std::filesystem;

namespace {

// --- which tensors ------------------------------------------------------------

// "preset gguf-w4" or the plan file.
std::string PlanWhere(const QuantPlan& plan) { return plan.source.empty() ? "plan " + plan.name : plan.source; }

// A plan rule's `format:` value that stores a weight of `bits` bits.
const char* SuggestedFormat(int bits) {
  switch (bits) {
    case 2: return "q2_k";
    case 3: return "q3_k";
    case 4: return "q4_0";
    case 8: return "q8_0";
    case 32: return "f32";
    default: return "f16";
  }
}

// "layers.3.mlp.down_proj" -> "*.mlp.down_proj"
std::string OpPattern(const std::string& op) {
  if (op.rfind("layers.", 0) != 0) return op;
  const size_t dot = op.find('.', 7);
  return dot == std::string::npos ? op : "*" + op.substr(dot);
}

GgmlType LinearType(const QuantPlan& plan, const std::string& op) {
  int rule = -1;
  const WeightFormat f = plan.FormatFor(op, &rule);
  if (!f.ggml) {
    std::string via = " (no rule matches it)";
    if (rule >= 0) {
      const QuantRule& r = plan.rules[static_cast<size_t>(rule)];
      via = fmt::format(" (rule {} '{}'{})", rule, r.pattern,
                        r.where.empty() || r.where == PlanWhere(plan) ? "" : " at " + r.where);
    }
    throw ConfigError(fmt::format(
        "{}: this plan has no ggml storage type for {} ({}){}; expected a ggml format (f32, f16, q4_0, q8_0, q2_k, "
        "q3_k, q4_k). hint: use a gguf-* preset or a plan rule with `format: {}`",
        PlanWhere(plan), op, f.Label(), via, SuggestedFormat(f.bits)));
  }
  return *f.ggml;
}

void CheckSupported(const ModelArch& a) {
  const std::string where = "model " + a.name;
  if (a.IsMoe()) {
    throw MakeConfigError(where, "num_local_experts", "mixture-of-experts models are not written as GGUF here",
                          "a dense llama or qwen3 model");
  }
  if (a.sliding_window > 0) {
    for (int64_t l = 0; l < a.num_hidden_layers; ++l) {
      if (a.LayerAttention(l) == AttentionKind::kSliding) {
        throw MakeConfigError(where, "sliding_window", "sliding-window layers are not written as GGUF here",
                              "full attention in every layer");
      }
    }
  }
  if (a.attention_bias || a.mlp_bias) {
    throw MakeConfigError(where, a.attention_bias ? "attention_bias" : "mlp_bias",
                          "projection biases are not written as GGUF here", "false");
  }
  if (a.hidden_act != "silu") {
    throw MakeConfigError(where, "hidden_act", "'" + a.hidden_act + "'", "silu (llama/qwen3 gated MLP)");
  }
  if (a.model_type == "llama" && a.qk_norm) {
    throw MakeConfigError(where, "qk_norm", "llama.cpp's llama architecture has no q/k norms", "false for llama");
  }
  for (const auto& [key, v] : {std::pair<const char*, int64_t>{"hidden_size", a.hidden_size},
                               {"intermediate_size", a.intermediate_size},
                               {"num_hidden_layers", a.num_hidden_layers},
                               {"num_attention_heads", a.num_attention_heads},
                               {"num_key_value_heads", a.num_key_value_heads},
                               {"head_dim", a.head_dim},
                               {"vocab_size", a.vocab_size}}) {
    if (v <= 0) throw MakeConfigError(where, key, fmt::format("is {}", v), "a positive size");
  }
}

int64_t Product(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t x : s) n *= x;
  return n;
}

// --- weights --------------------------------------------------------------------

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// Row `row` of a random tensor: a stream of its own (seed, tensor, row), so the
// bytes do not depend on threads or chunking. Values are Irwin-Hall sums of four
// 16-bit uniforms (bell-shaped, zero mean, bounded at +-3.46 std).
void RandomRow(uint64_t seed, uint64_t name_hash, int64_t row, double std, int64_t n, float* out) {
  uint64_t state = seed ^ (name_hash * 0x9e3779b97f4a7c15ULL);
  state = SplitMix64(state) ^ static_cast<uint64_t>(row);
  SplitMix64(state);
  const float scale = static_cast<float>(std * std::sqrt(3.0) / 65536.0);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = SplitMix64(state);
    const int32_t sum = static_cast<int32_t>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
    out[i] = static_cast<float>(sum - 131070) * scale;
  }
}

// Float offsets of a legacy llama2.c checkpoint's arrays (after the 28-byte header).
struct Llama2cLayout {
  int64_t token_embedding = 0, rms_att = 0, wq = 0, wk = 0, wv = 0, wo = 0, rms_ffn = 0, w1 = 0, w2 = 0, w3 = 0,
          rms_final = 0, freq_cis_real = 0, freq_cis_imag = 0, wcls = 0, end = 0;
  int64_t dim = 0, hidden = 0, kv_dim = 0;

  explicit Llama2cLayout(const Llama2cHeader& h) {
    const int64_t L = h.n_layers, V = std::abs(static_cast<int64_t>(h.vocab_size));
    dim = h.dim;
    hidden = h.hidden_dim;
    const int64_t head = h.n_heads > 0 ? dim / h.n_heads : 0;
    kv_dim = head * h.n_kv_heads;
    int64_t at = 0;
    auto take = [&](int64_t n) {
      const int64_t start = at;
      at += n;
      return start;
    };
    token_embedding = take(V * dim);
    rms_att = take(L * dim);
    wq = take(L * dim * dim);
    wk = take(L * kv_dim * dim);
    wv = take(L * kv_dim * dim);
    wo = take(L * dim * dim);
    rms_ffn = take(L * dim);
    w1 = take(L * hidden * dim);
    w2 = take(L * dim * hidden);
    w3 = take(L * hidden * dim);
    rms_final = take(dim);
    freq_cis_real = take(static_cast<int64_t>(h.seq_len) * head / 2);
    freq_cis_imag = take(static_cast<int64_t>(h.seq_len) * head / 2);
    wcls = h.SharedClassifier() ? token_embedding : take(V * dim);
    end = at;
  }

  // Float offset of a GGUF tensor's first element.
  int64_t OffsetOf(const GgufTensorEntry& e) const {
    const int64_t l = e.layer, n = e.elements;
    if (e.role == "token_embd") return token_embedding;
    if (e.role == "output") return wcls;
    if (e.role == "output_norm") return rms_final;
    if (e.role == "attn_norm") return rms_att + l * n;
    if (e.role == "ffn_norm") return rms_ffn + l * n;
    if (e.role == "attn_q") return wq + l * n;
    if (e.role == "attn_k") return wk + l * n;
    if (e.role == "attn_v") return wv + l * n;
    if (e.role == "attn_output") return wo + l * n;
    if (e.role == "ffn_gate") return w1 + l * n;
    if (e.role == "ffn_down") return w2 + l * n;
    if (e.role == "ffn_up") return w3 + l * n;
    throw InternalError("llama2.c checkpoints have no tensor " + e.name);
  }
};

// Runs fn(begin, end) over [0, n) split across `threads` threads.
template <typename Fn>
void ParallelFor(int threads, int64_t n, Fn fn) {
  const int t = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n)));
  if (t == 1) {
    fn(int64_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(t));
  for (int k = 1; k < t; ++k) {
    pool.emplace_back([&, k] {
      try {
        fn(n * k / t, n * (k + 1) / t);
      } catch (...) {
        errors[static_cast<size_t>(k)] = std::current_exception();
      }
    });
  }
  try {
    fn(int64_t{0}, n / t);
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

fs::path FindTokenizer(const GgufWeightSource& src, int64_t vocab_size) {
  if (!src.tokenizer.empty()) return src.tokenizer;
  if (src.checkpoint.empty()) return {};
  const fs::path dir = src.checkpoint.parent_path();
  for (const fs::path& p : {dir / fmt::format("tok{}.bin", vocab_size), dir / "tokenizer.bin"}) {
    if (fs::is_regular_file(p)) return p;
  }
  throw MakeConfigError(src.checkpoint.string(), "tokenizer",
                        fmt::format("no tokenizer beside the checkpoint (looked for tok{}.bin and tokenizer.bin)",
                                    vocab_size),
                        "a llama2.c tokenizer file", "pass it with --tokenizer PATH");
}

}  // namespace

// --- tensors ------------------------------------------------------------------

std::string GgufArchName(const ModelArch& arch) {
  if (arch.model_type == "llama" || arch.model_type == "qwen3") return arch.model_type;
  throw MakeConfigError("model " + arch.name, "model_type", "'" + arch.model_type + "' has no GGUF writer",
                        "llama or qwen3");
}

GgufTensorPlan ListModelTensors(const ModelArch& arch, const QuantPlan& plan) {
  GgufTensorPlan out;
  out.arch = GgufArchName(arch);
  CheckSupported(arch);
  const bool qwen3 = out.arch == "qwen3";
  const int64_t h = arch.hidden_size, ff = arch.intermediate_size, hd = arch.head_dim;
  const int64_t q = arch.num_attention_heads * hd, kv = arch.num_key_value_heads * hd, vocab = arch.vocab_size;
  // A plan without ggml types fails on the first decoder linear, then on lm_head.
  for (const char* op : {"attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                         "mlp.down_proj"}) {
    for (int64_t l = 0; l < arch.num_hidden_layers; ++l) LinearType(plan, fmt::format("layers.{}.{}", l, op));
  }
  const GgmlType head_type = LinearType(plan, "lm_head");

  auto add = [&](std::string name, std::string role, int64_t layer, std::string op, std::vector<int64_t> shape,
                 std::optional<GgmlType> type) {
    GgufTensorEntry e;
    e.name = std::move(name);
    e.role = std::move(role);
    e.layer = layer;
    e.op = std::move(op);
    e.shape = std::move(shape);
    e.type = type ? *type : (e.op.empty() ? GgmlType::kF32 : LinearType(plan, e.op));
    e.elements = Product(e.shape);
    const GgmlBlockLayout& l = GgmlLayout(e.type);
    if (e.shape[0] % l.block_elements != 0) {
      const std::string pattern = OpPattern(e.op);
      throw ConfigError(fmt::format(
          "{}: tensor {} ({}, shape {}): row length {} is not a multiple of {}'s block of {} weights; expected a row "
          "length divisible by {}. hint: store {} as f16 or f32 (a first plan rule `pattern: \"{}\"` with "
          "`format: f16`), or use a model whose sizes fit the block",
          PlanWhere(plan) + ", model " + arch.name, e.name, e.op, fmt::join(e.shape, "x"), e.shape[0], l.name,
          l.block_elements, l.block_elements, pattern, pattern));
    }
    e.bytes = GgmlRowBytes(e.type, e.shape[0]) * (e.elements / e.shape[0]);
    out.total_elements += e.elements;
    out.total_bytes += e.bytes;
    if (!e.op.empty()) {
      out.linear_elements += e.elements;
      out.linear_bytes += e.bytes;
    }
    out.tensors.push_back(std::move(e));
  };

  add("token_embd.weight", "token_embd", -1, "lm_head", {h, vocab}, head_type);
  for (int64_t l = 0; l < arch.num_hidden_layers; ++l) {
    const std::string b = fmt::format("blk.{}.", l), p = fmt::format("layers.{}.", l);
    add(b + "attn_norm.weight", "attn_norm", l, "", {h}, std::nullopt);
    add(b + "attn_q.weight", "attn_q", l, p + "attn.q_proj", {h, q}, std::nullopt);
    add(b + "attn_k.weight", "attn_k", l, p + "attn.k_proj", {h, kv}, std::nullopt);
    add(b + "attn_v.weight", "attn_v", l, p + "attn.v_proj", {h, kv}, std::nullopt);
    add(b + "attn_output.weight", "attn_output", l, p + "attn.o_proj", {q, h}, std::nullopt);
    if (qwen3) {
      add(b + "attn_q_norm.weight", "attn_q_norm", l, "", {hd}, std::nullopt);
      add(b + "attn_k_norm.weight", "attn_k_norm", l, "", {hd}, std::nullopt);
    }
    add(b + "ffn_norm.weight", "ffn_norm", l, "", {h}, std::nullopt);
    add(b + "ffn_gate.weight", "ffn_gate", l, p + "mlp.gate_proj", {h, ff}, std::nullopt);
    add(b + "ffn_up.weight", "ffn_up", l, p + "mlp.up_proj", {h, ff}, std::nullopt);
    add(b + "ffn_down.weight", "ffn_down", l, p + "mlp.down_proj", {ff, h}, std::nullopt);
  }
  add("output_norm.weight", "output_norm", -1, "", {h}, std::nullopt);
  add("output.weight", "output", -1, "lm_head", {h, vocab}, head_type);
  return out;
}

// --- vocabulary -----------------------------------------------------------------

GgufVocab SyntheticVocab(int64_t vocab_size) {
  if (vocab_size < 259) {
    throw MakeConfigError("synthetic vocabulary", "vocab_size", fmt::format("is {}", vocab_size),
                          "at least 259 (<unk>, <s>, </s> and 256 byte tokens)");
  }
  GgufVocab v;
  v.tokens.reserve(static_cast<size_t>(vocab_size));
  auto add = [&](std::string t, float score, int32_t type) {
    v.tokens.push_back(std::move(t));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0.0f, kTokenUnknown);
  add("<s>", 0.0f, kTokenControl);
  add("</s>", 0.0f, kTokenControl);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 0.0f, kTokenByte);
  for (int64_t i = 259; i < vocab_size; ++i) add(fmt::format("tok_{}", i), -static_cast<float>(i - 259), kTokenNormal);
  return v;
}

GgufVocab ReadLlama2cTokenizer(const fs::path& path, int64_t vocab_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw MakeConfigError(path.string(), "", "cannot open the tokenizer", "a llama2.c tokenizer file");
  std::error_code ec;
  const auto size = static_cast<int64_t>(fs::file_size(path, ec));
  int64_t pos = 0;
  auto read = [&](void* out, int64_t n, int64_t token) {
    if (n > size - pos) {
      throw MakeConfigError(path.string(), "",
                            fmt::format("the file ends inside token {} (byte {} of {})", token, pos, size),
                            fmt::format("{} tokens (the model's vocab_size)", vocab_size),
                            "the tokenizer is truncated or belongs to another model");
    }
    in.read(static_cast<char*>(out), n);
    pos += n;
  };
  int32_t max_len = 0;
  read(&max_len, 4, -1);
  if (max_len <= 0 || max_len > (1 << 20)) {
    throw MakeConfigError(path.string(), "max_token_length", fmt::format("is {}", max_len),
                          "a positive int32 header (llama2.c tokenizer format)");
  }
  GgufVocab v;
  for (int64_t i = 0; i < vocab_size; ++i) {
    float score = 0;
    int32_t len = 0;
    read(&score, 4, i);
    read(&len, 4, i);
    if (len < 0 || len > max_len) {
      throw MakeConfigError(path.string(), "", fmt::format("token {} has length {}", i, len),
                            fmt::format("0..{} (max_token_length)", max_len));
    }
    std::string raw(static_cast<size_t>(len), '\0');
    read(raw.data(), len, i);
    if (!std::isfinite(score)) {
      throw MakeConfigError(path.string(), "", fmt::format("token {} has score {}", i, score), "a finite float32");
    }
    int32_t type = kTokenNormal;
    std::string text;
    if (i == 0) {
      type = kTokenUnknown;
      text = raw;
    } else if (i == 1 || i == 2) {
      type = kTokenControl;
      text = raw == "\n<s>\n" ? "<s>" : raw == "\n</s>\n" ? "</s>" : raw;
    } else if (raw.size() == 6 && raw.rfind("<0x", 0) == 0 && raw[5] == '>') {
      type = kTokenByte;
      text = raw;
    } else {
      for (char c : raw) text += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);  // U+2581
    }
    v.tokens.push_back(std::move(text));
    v.scores.push_back(score);
    v.types.push_back(type);
  }
  if (pos != size) {
    throw MakeConfigError(path.string(), "", fmt::format("{} bytes follow the {} tokens", size - pos, vocab_size),
                          fmt::format("exactly {} tokens (the model's vocab_size)", vocab_size),
                          "the tokenizer belongs to a model with a larger vocabulary");
  }
  return v;
}

// --- llama2.c -------------------------------------------------------------------

int64_t Llama2cHeader::FileBytes() const { return 28 + 4 * Llama2cLayout(*this).end; }

Llama2cHeader CheckLlama2cCheckpoint(const fs::path& path, const ModelArch& arch) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw MakeConfigError(path.string(), "", "cannot open the checkpoint", "a llama2.c .bin file");
  std::error_code ec;
  const auto size = static_cast<int64_t>(fs::file_size(path, ec));
  Llama2cHeader h;
  int32_t f[7] = {};
  if (size < 28 || !in.read(reinterpret_cast<char*>(f), sizeof(f))) {
    throw MakeConfigError(path.string(), "header", fmt::format("the file has {} bytes", size),
                          "a 28-byte header of 7 int32 (legacy llama2.c format)");
  }
  h.dim = f[0];
  h.hidden_dim = f[1];
  h.n_layers = f[2];
  h.n_heads = f[3];
  h.n_kv_heads = f[4];
  h.vocab_size = f[5];
  h.seq_len = f[6];
  const std::string hint = fmt::format("the checkpoint does not hold model {} (model_zoo/{}.yaml)", arch.name, arch.name);
  if (arch.model_type != "llama") {
    throw MakeConfigError(path.string(), "model_type", "llama2.c checkpoints hold llama models, not " + arch.model_type,
                          "a model with model_type llama");
  }
  auto expect = [&](const char* field, int64_t got, int64_t want, const char* arch_key) {
    if (got != want) {
      throw MakeConfigError(path.string(), std::string("header.") + field,
                            fmt::format("is {}, but the model's {} is {}", got, arch_key, want),
                            fmt::format("{} = {}", field, want),
                            got == 0x616b3432 ? "this is a llama2.c v1/v2 file (magic 'ak42'); export it in the "
                                                "legacy format (version 0)"
                                              : hint);
    }
  };
  expect("dim", h.dim, arch.hidden_size, "hidden_size");
  expect("hidden_dim", h.hidden_dim, arch.intermediate_size, "intermediate_size");
  expect("n_layers", h.n_layers, arch.num_hidden_layers, "num_hidden_layers");
  expect("n_heads", h.n_heads, arch.num_attention_heads, "num_attention_heads");
  expect("n_kv_heads", h.n_kv_heads, arch.num_key_value_heads, "num_key_value_heads");
  expect("vocab_size", std::abs(static_cast<int64_t>(h.vocab_size)), arch.vocab_size, "vocab_size");
  expect("seq_len", h.seq_len, arch.max_position_embeddings, "max_position_embeddings");
  expect("dim / n_heads", h.dim / h.n_heads, arch.head_dim, "head_dim");
  if (h.SharedClassifier() != arch.tie_word_embeddings) {
    throw MakeConfigError(path.string(), "header.vocab_size",
                          fmt::format("is {} ({} classifier)", h.vocab_size, h.SharedClassifier() ? "shared" : "unshared"),
                          fmt::format("tie_word_embeddings: {}", arch.tie_word_embeddings ? "true" : "false"), hint);
  }
  if (size != h.FileBytes()) {
    throw MakeConfigError(path.string(), "",
                          fmt::format("the file has {} bytes but its header describes {}", size, h.FileBytes()),
                          "a complete legacy llama2.c checkpoint",
                          size < h.FileBytes() ? "the file is truncated; copy it again"
                                               : "trailing bytes: not a legacy (version 0) llama2.c file");
  }
  return h;
}

// --- metadata -------------------------------------------------------------------

std::vector<GgufKv> ModelGgufMetadata(const ModelArch& arch, const GgufTensorPlan& tensors, const GgufVocab& vocab) {
  const std::string a = tensors.arch;
  std::vector<GgufKv> kv;
  auto u32 = [&](const std::string& k, int64_t v) { kv.push_back({k, GgufValue::U32(static_cast<uint32_t>(v))}); };
  kv.push_back({"general.architecture", GgufValue::Str(a)});
  kv.push_back({"general.name", GgufValue::Str(arch.name)});
  u32("general.alignment", kGgufDefaultAlignment);
  // general.file_type (llama_ftype) when every plan-formatted tensor has one type.
  std::optional<GgmlType> uniform;
  bool mixed = false;
  for (const auto& e : tensors.tensors) {
    if (e.op.empty()) continue;
    if (uniform && *uniform != e.type) mixed = true;
    uniform = e.type;
  }
  if (uniform && !mixed) {
    static const std::map<GgmlType, int> kFtype = {{GgmlType::kF32, 0},  {GgmlType::kF16, 1},  {GgmlType::kQ4_0, 2},
                                                   {GgmlType::kQ8_0, 7}, {GgmlType::kQ2_K, 10}, {GgmlType::kQ3_K, 11},
                                                   {GgmlType::kQ4_K, 14}};
    u32("general.file_type", kFtype.at(*uniform));
  }
  bool quantized = false;
  for (const auto& e : tensors.tensors) quantized |= e.type != GgmlType::kF32 && e.type != GgmlType::kF16;
  if (quantized) u32("general.quantization_version", 2);
  u32(a + ".vocab_size", arch.vocab_size);
  u32(a + ".context_length", arch.max_position_embeddings);
  u32(a + ".embedding_length", arch.hidden_size);
  u32(a + ".block_count", arch.num_hidden_layers);
  u32(a + ".feed_forward_length", arch.intermediate_size);
  u32(a + ".attention.head_count", arch.num_attention_heads);
  u32(a + ".attention.head_count_kv", arch.num_key_value_heads);
  kv.push_back({a + ".attention.layer_norm_rms_epsilon", GgufValue::F32(static_cast<float>(arch.rms_norm_eps))});
  kv.push_back({a + ".rope.freq_base", GgufValue::F32(static_cast<float>(arch.rope_theta))});
  u32(a + ".rope.dimension_count", arch.head_dim);
  if (a == "qwen3" || arch.head_dim * arch.num_attention_heads != arch.hidden_size) {
    u32(a + ".attention.key_length", arch.head_dim);
    u32(a + ".attention.value_length", arch.head_dim);
  }
  kv.push_back({"tokenizer.ggml.model", GgufValue::Str("llama")});
  kv.push_back({"tokenizer.ggml.tokens", GgufValue::StrArray(vocab.tokens)});
  kv.push_back({"tokenizer.ggml.scores", GgufValue::F32Array(vocab.scores)});
  kv.push_back({"tokenizer.ggml.token_type", GgufValue::I32Array(vocab.types)});
  u32("tokenizer.ggml.bos_token_id", vocab.bos_id);
  u32("tokenizer.ggml.eos_token_id", vocab.eos_id);
  u32("tokenizer.ggml.unknown_token_id", vocab.unk_id);
  kv.push_back({"tokenizer.ggml.add_bos_token", GgufValue::Bool(true)});
  kv.push_back({"tokenizer.ggml.add_eos_token", GgufValue::Bool(false)});
  return kv;
}

// --- writing --------------------------------------------------------------------

GgufWriteResult WriteModelGguf(const ModelArch& arch, const QuantPlan& plan, const GgufWeightSource& src,
                               const fs::path& out) {
  GgufWriteResult result;
  result.tensors = ListModelTensors(arch, plan);
  const GgufTensorPlan& tp = result.tensors;

  std::optional<Llama2cLayout> ckpt;
  std::ifstream ckpt_in;
  if (!src.checkpoint.empty()) {
    ckpt.emplace(CheckLlama2cCheckpoint(src.checkpoint, arch));
    ckpt_in.open(src.checkpoint, std::ios::binary);
  }
  const fs::path tok = FindTokenizer(src, arch.vocab_size);
  const GgufVocab vocab = tok.empty() ? SyntheticVocab(arch.vocab_size) : ReadLlama2cTokenizer(tok, arch.vocab_size);

  std::vector<GgufTensorInfo> infos;
  for (const auto& e : tp.tensors) infos.push_back({e.name, e.shape, e.type, 0});

  constexpr int64_t kChunkElements = int64_t{1} << 22;  // ~16 MB of floats per chunk
  const int threads = std::max(1, src.threads);
  // Chunks of rows are generated (or read) and quantized on `threads` threads
  // into one buffer while the previous chunk is written from the other.
  std::vector<float> rows;
  std::vector<uint8_t> bytes[2];
  int64_t done = 0;

  const GgufFillFn fill = [&](size_t index, const GgufTensorInfo&, const GgufWriteFn& write) {
    const GgufTensorEntry& e = tp.tensors[index];
    const int64_t ne0 = e.shape[0], n_rows = e.elements / ne0;
    const int64_t row_bytes = GgmlRowBytes(e.type, ne0);
    const int64_t chunk_rows = std::max<int64_t>(1, kChunkElements / ne0);
    const uint64_t name_hash = Fnv1a(e.name);
    const bool norm = e.op.empty();
    rows.resize(static_cast<size_t>(std::min(chunk_rows, n_rows) * ne0));
    for (auto& b : bytes) b.resize(static_cast<size_t>(std::min(chunk_rows, n_rows) * row_bytes));
    std::future<void> pending;  // the previous chunk's write; its destructor waits for it
    int64_t pending_bytes = 0;
    auto finish_pending = [&] {
      if (!pending.valid()) return;
      pending.get();
      done += pending_bytes;
      if (src.progress) src.progress(done, tp.total_bytes);
    };
    for (int64_t r0 = 0, k = 0; r0 < n_rows; r0 += chunk_rows, ++k) {
      const int64_t nr = std::min(chunk_rows, n_rows - r0);
      std::vector<uint8_t>& buf = bytes[k % 2];
      if (ckpt) {
        const int64_t offset = 28 + 4 * (ckpt->OffsetOf(e) + r0 * ne0);
        ckpt_in.seekg(offset);
        ckpt_in.read(reinterpret_cast<char*>(rows.data()), static_cast<std::streamsize>(nr * ne0 * 4));
        if (!ckpt_in) {
          throw MakeConfigError(src.checkpoint.string(), e.name, fmt::format("cannot read bytes at {}", offset),
                                "a complete llama2.c checkpoint");
        }
      }
      ParallelFor(threads, nr, [&](int64_t b, int64_t end) {
        for (int64_t r = b; r < end; ++r) {
          float* x = rows.data() + r * ne0;
          if (!ckpt) {
            if (norm) {
              std::fill(x, x + ne0, 1.0f);
            } else {
              RandomRow(src.seed, name_hash, r0 + r, src.init_std, ne0, x);
            }
          } else {
            for (int64_t i = 0; i < ne0; ++i) {
              if (!std::isfinite(x[i])) {
                throw MakeConfigError(src.checkpoint.string(), e.name,
                                      fmt::format("row {} column {} is {}", r0 + r, i, x[i]), "finite weights");
              }
            }
          }
          QuantizeRow(e.type, x, ne0, buf.data() + r * row_bytes);
        }
      });
      finish_pending();
      const std::span<const uint8_t> chunk(buf.data(), static_cast<size_t>(nr * row_bytes));
      pending_bytes = nr * row_bytes;
      pending = std::async(std::launch::async, [&write, chunk] { write(chunk); });
    }
    finish_pending();
  };
  result.layout = WriteGguf(out, ModelGgufMetadata(arch, tp, vocab), std::move(infos), fill);
  return result;
}

}  // namespace lifeline::measure
