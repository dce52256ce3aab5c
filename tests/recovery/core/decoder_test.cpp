#include <cmath>
#include <fstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include <nlohmann/json.hpp>

#include "recovery/io/hf_checkpoint.hpp"
#include "recovery/io/safetensors.hpp"
#include "recovery/model/decoder.hpp"
#include "recovery/model/llama2c_checkpoint.hpp"
#include "recovery/tokenizer/tokenizer.hpp"
#include "common/error.hpp"
#include "test_util.hpp"

namespace lifeline::recovery {
namespace {

// Naive reference forward pass, one token at a time, as llama2.c's run.c
// computes it: per-head loops, explicit softmax; RoPE on interleaved pairs
// (llama2.c) or on halves (Hugging Face), optional per-head q/k RMSNorm (Qwen3).
at::Tensor NaiveForward(const Checkpoint& ck, const std::vector<int64_t>& ids) {
  const auto& a = ck.arch;
  const auto& w = ck.tensors;
  const bool interleaved = ck.rope_interleaved;
  const int64_t H = a.num_attention_heads, KV = a.num_key_value_heads,
                hd = a.head_dim, L = a.num_hidden_layers, T = static_cast<int64_t>(ids.size());
  auto W = [&](const std::string& n) { return w.at(n).to(at::kDouble); };
  auto rmsnorm = [&](const at::Tensor& x, const at::Tensor& g) {
    double ss = 0;
    const int64_t n = x.size(0);
    for (int64_t i = 0; i < n; ++i) ss += x[i].item<double>() * x[i].item<double>();
    return x / std::sqrt(ss / n + a.rms_norm_eps) * g;
  };
  std::vector<std::vector<at::Tensor>> kc(L), vc(L);
  std::vector<at::Tensor> out;
  for (int64_t t = 0; t < T; ++t) {
    at::Tensor x = W("model.embed_tokens.weight")[ids[t]].clone();
    for (int64_t l = 0; l < L; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      at::Tensor xn = rmsnorm(x, W(p + "input_layernorm.weight"));
      at::Tensor q = at::mv(W(p + "self_attn.q_proj.weight"), xn);
      at::Tensor k = at::mv(W(p + "self_attn.k_proj.weight"), xn);
      at::Tensor v = at::mv(W(p + "self_attn.v_proj.weight"), xn);
      if (a.qk_norm) {
        for (int64_t h = 0; h < H; ++h) {
          q.narrow(0, h * hd, hd).copy_(rmsnorm(q.narrow(0, h * hd, hd).clone(), W(p + "self_attn.q_norm.weight")));
        }
        for (int64_t h = 0; h < KV; ++h) {
          k.narrow(0, h * hd, hd).copy_(rmsnorm(k.narrow(0, h * hd, hd).clone(), W(p + "self_attn.k_norm.weight")));
        }
      }
      auto rope = [&](at::Tensor vec) {
        at::Tensor r = vec.clone();
        for (int64_t h0 = 0; h0 < vec.size(0); h0 += hd) {
          for (int64_t j = 0; j < hd / 2; ++j) {
            // pair (i0, i1) rotates by t * theta^(-2j/hd)
            const int64_t i0 = interleaved ? h0 + 2 * j : h0 + j;
            const int64_t i1 = interleaved ? h0 + 2 * j + 1 : h0 + j + hd / 2;
            const double freq = 1.0 / std::pow(a.rope_theta, 2.0 * j / hd);
            const double c = std::cos(t * freq), s = std::sin(t * freq);
            const double v0 = vec[i0].item<double>(), v1 = vec[i1].item<double>();
            r[i0] = v0 * c - v1 * s;
            r[i1] = v0 * s + v1 * c;
          }
        }
        return r;
      };
      q = rope(q);
      k = rope(k);
      kc[l].push_back(k);
      vc[l].push_back(v);
      at::Tensor att_out = at::zeros({H * hd}, at::kDouble);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / KV);
        const at::Tensor qh = q.narrow(0, h * hd, hd);
        std::vector<double> sc;
        for (int64_t s = 0; s <= t; ++s) {
          sc.push_back(at::dot(qh, kc[l][s].narrow(0, g * hd, hd)).item<double>() /
                       std::sqrt(static_cast<double>(hd)));
        }
        double mx = sc[0], sum = 0;
        for (double s : sc) mx = std::max(mx, s);
        for (double& s : sc) sum += (s = std::exp(s - mx));
        for (int64_t s = 0; s <= t; ++s) {
          att_out.narrow(0, h * hd, hd) += sc[s] / sum * vc[l][s].narrow(0, g * hd, hd);
        }
      }
      x = x + at::mv(W(p + "self_attn.o_proj.weight"), att_out);
      xn = rmsnorm(x, W(p + "post_attention_layernorm.weight"));
      const at::Tensor g1 = at::mv(W(p + "mlp.gate_proj.weight"), xn);
      const at::Tensor u = at::mv(W(p + "mlp.up_proj.weight"), xn);
      x = x + at::mv(W(p + "mlp.down_proj.weight"), g1 * at::sigmoid(g1) * u);
    }
    const std::string head = w.count("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight";
    out.push_back(at::mv(W(head), rmsnorm(x, W("model.norm.weight"))));
  }
  return at::stack(out).to(at::kFloat);  // (T, V)
}

TEST(Llama2cCheckpoint, LoadsStories260k) {
  LIFELINE_REQUIRE_STORIES260K();
  const Checkpoint ck = LoadLlama2cCheckpoint(Stories260kModelPath());
  EXPECT_EQ(ck.arch.hidden_size, 64);
  EXPECT_EQ(ck.arch.intermediate_size, 172);
  EXPECT_EQ(ck.arch.num_hidden_layers, 5);
  EXPECT_EQ(ck.arch.num_attention_heads, 8);
  EXPECT_EQ(ck.arch.num_key_value_heads, 4);
  EXPECT_EQ(ck.arch.head_dim, 8);
  EXPECT_EQ(ck.arch.vocab_size, 512);
  EXPECT_TRUE(ck.arch.tie_word_embeddings);
  EXPECT_TRUE(ck.rope_interleaved);
  int64_t params = 0;
  for (const auto& [name, t] : ck.tensors) {
    if (name != "lm_head.weight") params += t.numel();
  }
  EXPECT_EQ(params, 260032);
  EXPECT_EQ(ck.tensors.at("model.layers.4.mlp.gate_proj.weight").sizes(),
            (std::vector<int64_t>{172, 64}));
}

TEST(Llama2cCheckpoint, TruncatedFileIsConfigError) {
  LIFELINE_REQUIRE_STORIES260K();
  const auto tmp = std::filesystem::temp_directory_path() / "lifeline_truncated.bin";
  {
    std::ifstream in(Stories260kModelPath(), std::ios::binary);
    std::vector<char> buf(5000);
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::ofstream(tmp, std::ios::binary).write(buf.data(), static_cast<std::streamsize>(buf.size()));
  }
  try {
    LoadLlama2cCheckpoint(tmp);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("lifeline_truncated.bin"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1056540 bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("5000 bytes"), std::string::npos) << msg;
  }
  std::filesystem::remove(tmp);
}

TEST(Llama2cCheckpoint, MissingAndGarbageFilesAreConfigErrors) {
  EXPECT_THROW(LoadLlama2cCheckpoint("/nonexistent/model.bin"), ConfigError);
  const auto tmp = std::filesystem::temp_directory_path() / "lifeline_garbage.bin";
  std::ofstream(tmp, std::ios::binary) << "this is not a checkpoint at all, no sir";
  EXPECT_THROW(LoadLlama2cCheckpoint(tmp), ConfigError);
  std::filesystem::remove(tmp);
}

TEST(Decoder, LogitsMatchNaiveReference) {
  LIFELINE_REQUIRE_STORIES260K();
  const Checkpoint ck = LoadLlama2cCheckpoint(Stories260kModelPath());
  Decoder model = BuildDecoder(ck);
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> ids = {1, 403, 407, 261, 378, 68, 55, 449, 9, 300, 17, 2, 98};
  const at::Tensor ref = NaiveForward(ck, ids);
  const at::Tensor got =
      model->forward(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0);  // (T, V)
  const double max_diff = (got - ref).abs().max().item<double>();
  std::cout << "max |logit diff| vs naive reference: " << max_diff << " (tolerance 1e-4)\n";
  EXPECT_LT(max_diff, 1e-4);
}

TEST(Decoder, KvCacheDecodingEqualsFullForward) {
  LIFELINE_REQUIRE_STORIES260K();
  Decoder model = BuildDecoder(LoadLlama2cCheckpoint(Stories260kModelPath()));
  torch::NoGradGuard no_grad;
  at::manual_seed(3);
  const at::Tensor ids = at::randint(3, 512, {3, 40}, at::kLong);
  const at::Tensor full = model->forward(ids);  // (3, 40, V)
  KvCache cache = model->NewCache(3, 64);
  std::vector<at::Tensor> parts;
  parts.push_back(model->Forward(ids.narrow(1, 0, 7), &cache));  // a prefill chunk
  for (int64_t t = 7; t < 40; ++t) parts.push_back(model->Forward(ids.narrow(1, t, 1), &cache));
  const at::Tensor inc = at::cat(parts, 1);
  const double max_diff = (inc - full).abs().max().item<double>();
  std::cout << "max |logit diff| incremental vs full: " << max_diff << " (tolerance 1e-4)\n";
  EXPECT_LT(max_diff, 1e-4);
  EXPECT_EQ(cache.length, 40);
}

TEST(Decoder, GreedyFromBosTellsTheLilyStory) {
  LIFELINE_REQUIRE_STORIES260K();
  Decoder model = BuildDecoder(LoadLlama2cCheckpoint(Stories260kModelPath()));
  auto tok = LoadLlama2cTokenizer(Stories260kTokenizerPath());
  torch::NoGradGuard no_grad;
  KvCache cache = model->NewCache(1, 64);
  std::vector<int64_t> out = {1};
  at::Tensor next = at::tensor({int64_t{1}}, at::kLong).view({1, 1});
  for (int i = 0; i < 40; ++i) {
    const at::Tensor logits = model->Forward(next, &cache);  // (1, 1, V)
    next = logits.argmax(-1);
    out.push_back(next.item<int64_t>());
  }
  const std::string text = tok->Decode(out);
  std::cout << "greedy: " << text << "\n";
  EXPECT_EQ(text.rfind("Once upon a time, there was a little girl named Lily", 0), 0u) << text;
}

TEST(Decoder, HuggingFaceQwen3CheckpointMatchesNaiveReference) {
  // A tiny Qwen3-style checkpoint (q/k norm, GQA, untied head, rotate-half
  // RoPE) written as config.json + model.safetensors, read by LoadHfCheckpoint.
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_hf_qwen3_tiny";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  nlohmann::json cfg = {{"architectures", {"Qwen3ForCausalLM"}}, {"model_type", "qwen3"},
                        {"hidden_size", 32}, {"intermediate_size", 48}, {"num_hidden_layers", 2},
                        {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"head_dim", 16},
                        {"vocab_size", 50}, {"max_position_embeddings", 64},
                        {"rms_norm_eps", 1e-6}, {"rope_theta", 1000000.0}, {"hidden_act", "silu"},
                        {"tie_word_embeddings", false}};
  std::ofstream(dir / "config.json") << cfg.dump(2);
  at::manual_seed(11);
  ModelArch arch;
  {
    // Shapes from a decoder built on the same description.
    arch.name = "probe";
    arch.hidden_size = 32;
    arch.intermediate_size = 48;
    arch.num_hidden_layers = 2;
    arch.num_attention_heads = 4;
    arch.num_key_value_heads = 2;
    arch.head_dim = 16;
    arch.vocab_size = 50;
    arch.max_position_embeddings = 64;
    arch.qk_norm = true;
  }
  Decoder probe(arch, false);
  std::map<std::string, at::Tensor> w;
  for (const auto& item : probe->named_parameters()) w[item.key()] = at::randn(item.value().sizes()) * 0.3;
  WriteSafetensors(dir / "model.safetensors", w);
  const HfCheckpoint hf = LoadHfCheckpoint(dir);
  EXPECT_TRUE(hf.arch.qk_norm);
  EXPECT_FALSE(hf.arch.tie_word_embeddings);
  Checkpoint ck{hf.arch, hf.tensors, /*rope_interleaved=*/false};
  Decoder model = BuildDecoder(ck);
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> ids = {3, 17, 42, 8, 0, 49, 21};
  const at::Tensor ref = NaiveForward(ck, ids);
  const at::Tensor got = model->forward(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0);
  const double max_diff = (got - ref).abs().max().item<double>();
  std::cout << "HF qwen3 tiny: max |logit diff| vs naive reference: " << max_diff << "\n";
  EXPECT_LT(max_diff, 1e-4);
  std::filesystem::remove_all(dir);
}

TEST(Decoder, PatternSelectionAndErrors) {
  ModelArch a;
  a.name = "tiny";
  a.model_type = "qwen3";
  a.hidden_size = 16;
  a.intermediate_size = 24;
  a.num_hidden_layers = 2;
  a.num_attention_heads = 4;
  a.num_key_value_heads = 2;
  a.head_dim = 8;
  a.vocab_size = 32;
  a.max_position_embeddings = 64;
  a.qk_norm = true;
  Decoder model(a, /*rope_interleaved=*/false);
  EXPECT_EQ(model->Linears().size(), 2u * 7u + 1u);  // + untied lm_head
  const auto sel = model->SelectLinears({"mlp.gate_proj", "layers.1.self_attn.q_proj"}, "--layers");
  ASSERT_EQ(sel.size(), 3u);
  EXPECT_EQ(sel[0].first, "model.layers.0.mlp.gate_proj");
  EXPECT_EQ(sel[1].first, "model.layers.1.self_attn.q_proj");
  EXPECT_EQ(sel[2].first, "model.layers.1.mlp.gate_proj");
  EXPECT_EQ(model->SelectLinears({"layers.*.mlp.up_proj"}, "x").size(), 2u);
  try {
    model->SelectLinears({"mlp.gate"}, "--layers");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("--layers"), std::string::npos) << msg;
    EXPECT_NE(msg.find("mlp.gate_proj"), std::string::npos) << msg;  // the hint
  }
  // Qwen3-style names load, with q/k norms; a wrong shape is a ConfigError.
  std::map<std::string, at::Tensor> sd;
  for (const auto& item : model->named_parameters()) sd[item.key()] = at::randn(item.value().sizes());
  model->LoadStateDict(sd, "synthetic");
  EXPECT_TRUE(sd.count("model.layers.0.self_attn.q_norm.weight"));
  const at::Tensor logits = model->forward(at::zeros({2, 5}, at::kLong));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 5, 32}));
  sd["model.norm.weight"] = at::ones({3});
  EXPECT_THROW(model->LoadStateDict(sd, "synthetic"), ConfigError);
  sd.erase("model.norm.weight");
  EXPECT_THROW(model->LoadStateDict(sd, "synthetic"), ConfigError);
}

TEST(Decoder, HfRopeKvCacheConsistent) {
  ModelArch a;
  a.name = "tiny";
  a.model_type = "llama";
  a.hidden_size = 16;
  a.intermediate_size = 24;
  a.num_hidden_layers = 2;
  a.num_attention_heads = 4;
  a.num_key_value_heads = 1;
  a.head_dim = 4;
  a.vocab_size = 32;
  a.max_position_embeddings = 64;
  a.tie_word_embeddings = true;
  Decoder model(a, false);
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.normal_(0, 0.5);
  const at::Tensor ids = at::randint(0, 32, {2, 9}, at::kLong);
  const at::Tensor full = model->forward(ids);
  KvCache cache = model->NewCache(2, 9);
  std::vector<at::Tensor> parts;
  for (int64_t t = 0; t < 9; ++t) parts.push_back(model->Forward(ids.narrow(1, t, 1), &cache));
  EXPECT_LT((at::cat(parts, 1) - full).abs().max().item<double>(), 1e-4);
}

}  // namespace
}  // namespace lifeline::recovery
