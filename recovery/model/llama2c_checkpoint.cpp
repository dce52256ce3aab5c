#include "recovery/model/llama2c_checkpoint.hpp"

#include <array>
#include <cstring>
#include <fstream>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "common/error.hpp"

namespace lifeline::recovery {
namespace {

constexpr int64_t kHeaderBytes = 7 * 4;

ConfigError FileError(const std::filesystem::path& path, const std::string& what,
                      const std::string& hint = "") {
  std::string msg = fmt::format("{}: {}", path.string(), what);
  if (!hint.empty()) msg += ". hint: " + hint;
  return ConfigError(msg);
}

}  // namespace

int64_t Llama2cExpectedBytes(int64_t dim, int64_t hidden_dim, int64_t n_layers,
                             int64_t n_heads, int64_t n_kv_heads,
                             int64_t vocab_size, int64_t seq_len, bool shared_classifier) {
  const int64_t head_size = dim / n_heads;
  const int64_t kv_dim = head_size * n_kv_heads;
  int64_t floats = vocab_size * dim;                 // token_embedding
  floats += n_layers * dim;                          // rms_att
  floats += n_layers * dim * dim;                    // wq
  floats += 2 * n_layers * dim * kv_dim;             // wk, wv
  floats += n_layers * dim * dim;                    // wo
  floats += n_layers * dim;                          // rms_ffn
  floats += 3 * n_layers * dim * hidden_dim;         // w1, w2, w3
  floats += dim;                                     // rms_final
  floats += seq_len * head_size;                     // freq_cis_real + imag (head/2 each)
  if (!shared_classifier) floats += vocab_size * dim;  // wcls
  return kHeaderBytes + floats * 4;
}

Checkpoint LoadLlama2cCheckpoint(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw FileError(path, "checkpoint file not found",
                    "pass --model PATH to a llama2.c .bin file or a Hugging Face directory; the default model is "
                    "read from the shared data folder ($LIFELINE_SHARED_DIR, else ../shared beside the checkout: "
                    "models/stories260k/stories260K.bin)");
  }
  const auto actual = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path, "cannot open checkpoint");
  if (actual < kHeaderBytes) {
    throw FileError(path, fmt::format("truncated llama2.c checkpoint: expected at least {} "
                                      "header bytes, file has {} bytes",
                                      kHeaderBytes, actual));
  }
  std::array<int32_t, 7> h{};
  in.read(reinterpret_cast<char*>(h.data()), kHeaderBytes);
  const int64_t dim = h[0], hidden = h[1], n_layers = h[2], n_heads = h[3],
                n_kv = h[4], seq_len = h[6];
  const bool shared = h[5] > 0;
  const int64_t vocab = h[5] > 0 ? h[5] : -static_cast<int64_t>(h[5]);
  const bool sane = dim > 0 && hidden > 0 && n_layers > 0 && n_heads > 0 && n_kv > 0 &&
                    vocab > 0 && seq_len > 0 && dim % n_heads == 0 && n_heads % n_kv == 0 &&
                    dim <= (1 << 16) && hidden <= (1 << 18) && n_layers <= 1024 &&
                    vocab <= (1 << 22) && seq_len <= (1 << 22) && (dim / n_heads) % 2 == 0;
  if (!sane) {
    throw FileError(path, fmt::format("malformed llama2.c header (dim={}, hidden_dim={}, "
                                      "n_layers={}, n_heads={}, n_kv_heads={}, vocab_size={}, "
                                      "seq_len={})",
                                      h[0], h[1], h[2], h[3], h[4], h[5], h[6]),
                    "expected a llama2.c legacy (version 0) float32 checkpoint");
  }
  const int64_t expected =
      Llama2cExpectedBytes(dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len, shared);
  if (actual != expected) {
    throw FileError(path, fmt::format("{} llama2.c checkpoint: header implies {} bytes, "
                                      "file has {} bytes",
                                      actual < expected ? "truncated" : "oversized", expected,
                                      actual));
  }

  std::vector<float> data(static_cast<size_t>((actual - kHeaderBytes) / 4));
  in.read(reinterpret_cast<char*>(data.data()), actual - kHeaderBytes);
  if (!in) throw FileError(path, "read error");
  const at::Tensor all = at::from_blob(data.data(), {static_cast<int64_t>(data.size())},
                                       at::kFloat).clone();
  int64_t off = 0;
  auto take = [&](std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    at::Tensor t = all.narrow(0, off, n).view(shape).clone();
    off += n;
    return t;
  };

  const int64_t head = dim / n_heads;
  const int64_t kv_dim = head * n_kv;
  Checkpoint ck;
  ck.rope_interleaved = true;
  ModelArch& a = ck.arch;
  a.name = path.stem().string();
  a.model_type = "llama";
  a.hidden_size = dim;
  a.intermediate_size = hidden;
  a.num_hidden_layers = n_layers;
  a.num_attention_heads = n_heads;
  a.num_key_value_heads = n_kv;
  a.head_dim = head;
  a.vocab_size = vocab;
  a.max_position_embeddings = seq_len;
  a.tie_word_embeddings = shared;
  a.rms_norm_eps = 1e-5;  // llama2.c run.c uses 1e-5
  a.rope_theta = 10000.0;

  auto& t = ck.tensors;
  const at::Tensor emb = take({vocab, dim});
  t["model.embed_tokens.weight"] = emb;
  auto per_layer = [&](const std::string& suffix, std::vector<int64_t> shape) {
    std::vector<int64_t> full = {n_layers};
    full.insert(full.end(), shape.begin(), shape.end());
    at::Tensor all_layers = take(full);
    for (int64_t l = 0; l < n_layers; ++l) {
      t[fmt::format("model.layers.{}.{}", l, suffix)] = all_layers[l].clone();
    }
  };
  per_layer("input_layernorm.weight", {dim});
  per_layer("self_attn.q_proj.weight", {dim, dim});
  per_layer("self_attn.k_proj.weight", {kv_dim, dim});
  per_layer("self_attn.v_proj.weight", {kv_dim, dim});
  per_layer("self_attn.o_proj.weight", {dim, dim});
  per_layer("post_attention_layernorm.weight", {dim});
  per_layer("mlp.gate_proj.weight", {hidden, dim});  // w1
  per_layer("mlp.down_proj.weight", {dim, hidden});  // w2
  per_layer("mlp.up_proj.weight", {hidden, dim});    // w3
  t["model.norm.weight"] = take({dim});
  take({seq_len, head / 2});  // freq_cis_real (recomputed by the model)
  take({seq_len, head / 2});  // freq_cis_imag
  t["lm_head.weight"] = shared ? emb : take({vocab, dim});
  LIFELINE_CHECK(off == all.numel(), "llama2.c tensor walk did not consume the file");
  return ck;
}

}  // namespace lifeline::recovery
