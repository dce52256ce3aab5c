#include "recovery/model/decoder.hpp"

#include <cmath>
#include <set>

#include <fmt/format.h>

#include "common/error.hpp"
#include "recovery/io/arch_support.hpp"

namespace lifeline::recovery {

namespace {
constexpr int64_t kMaxRopePositions = 1 << 16;  // cap for very long-context configs
}

RmsNormImpl::RmsNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight_ = register_parameter("weight", at::ones({dim}));
}

at::Tensor RmsNormImpl::forward(const at::Tensor& x) {
  const at::Tensor inv = at::rsqrt(x.pow(2).mean({-1}, /*keepdim=*/true) + eps_);
  return x * inv * weight_;
}

AttentionImpl::AttentionImpl(const ModelArch& a, bool rope_interleaved)
    : n_heads_(a.num_attention_heads),
      n_kv_(a.num_key_value_heads),
      head_dim_(a.head_dim),
      rope_interleaved_(rope_interleaved) {
  const int64_t c = a.hidden_size;
  const bool b = a.attention_bias || a.qkv_bias;  // attention_bias: q/k/v/o; qkv_bias (Qwen2): q/k/v
  AddLinear("q_proj", std::make_shared<DenseLinear>(c, n_heads_ * head_dim_, b), &q_proj_);
  AddLinear("k_proj", std::make_shared<DenseLinear>(c, n_kv_ * head_dim_, b), &k_proj_);
  AddLinear("v_proj", std::make_shared<DenseLinear>(c, n_kv_ * head_dim_, b), &v_proj_);
  AddLinear("o_proj", std::make_shared<DenseLinear>(n_heads_ * head_dim_, c, a.attention_bias), &o_proj_);
  if (a.qk_norm) {
    q_norm_ = register_module("q_norm", RmsNorm(head_dim_, a.rms_norm_eps));
    k_norm_ = register_module("k_norm", RmsNorm(head_dim_, a.rms_norm_eps));
  }
}

at::Tensor AttentionImpl::Rope(const at::Tensor& x, const at::Tensor& cos,
                               const at::Tensor& sin) const {
  // x (B, H, T, hd); cos/sin (T, hd/2)
  if (rope_interleaved_) {
    // llama2.c: pairs (x[2i], x[2i+1]) rotate by angle pos * inv_freq[i].
    const at::Tensor xp = x.unflatten(-1, {head_dim_ / 2, 2});
    const at::Tensor x0 = xp.select(-1, 0), x1 = xp.select(-1, 1);
    return at::stack({x0 * cos - x1 * sin, x0 * sin + x1 * cos}, -1).flatten(-2);
  }
  // Hugging Face: halves (x[i], x[i + hd/2]) rotate by angle pos * inv_freq[i].
  const at::Tensor x0 = x.narrow(-1, 0, head_dim_ / 2);
  const at::Tensor x1 = x.narrow(-1, head_dim_ / 2, head_dim_ / 2);
  return at::cat({x0 * cos - x1 * sin, x1 * cos + x0 * sin}, -1);
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos,
                                  const at::Tensor& sin, const at::Tensor& mask, int64_t pos0,
                                  at::Tensor* cache_k, at::Tensor* cache_v) {
  const int64_t B = x.size(0), T = x.size(1);
  const int64_t rep = n_heads_ / n_kv_;
  at::Tensor q = q_proj_->forward(x).view({B, T, n_heads_, head_dim_});  // (B, T, H, hd)
  at::Tensor k = k_proj_->forward(x).view({B, T, n_kv_, head_dim_});     // (B, T, KV, hd)
  at::Tensor v = v_proj_->forward(x).view({B, T, n_kv_, head_dim_});     // (B, T, KV, hd)
  if (q_norm_) {
    q = q_norm_->forward(q);
    k = k_norm_->forward(k);
  }
  const at::Tensor c = cos.narrow(0, pos0, T), s = sin.narrow(0, pos0, T);
  q = Rope(q.transpose(1, 2), c, s);  // (B, H, T, hd)
  k = Rope(k.transpose(1, 2), c, s);  // (B, KV, T, hd)
  v = v.transpose(1, 2);              // (B, KV, T, hd)
  int64_t S = T;
  if (cache_k != nullptr) {
    cache_k->narrow(2, pos0, T).copy_(k);
    cache_v->narrow(2, pos0, T).copy_(v);
    S = pos0 + T;
    k = cache_k->narrow(2, 0, S);
    v = cache_v->narrow(2, 0, S);
  }
  // Grouped-query attention without materializing repeated K/V: query head h
  // uses KV head h / rep, so fold the `rep` query heads of a group into rows.
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  const at::Tensor qg = q.reshape({B * n_kv_, rep * T, head_dim_});  // (B*KV, rep*T, hd)
  const at::Tensor kt = k.reshape({B * n_kv_, S, head_dim_}).transpose(1, 2);  // (B*KV, hd, S)
  at::Tensor att = mask.defined()
                       ? at::baddbmm(mask, qg, kt, /*beta=*/1.0, /*alpha=*/scale)  // + causal mask
                       : at::bmm(qg, kt) * scale;  // (B*KV, rep*T, S)
  att = at::softmax(att, -1);
  const at::Tensor y = at::bmm(att, v.reshape({B * n_kv_, S, head_dim_}))  // (B*KV, rep*T, hd)
                           .view({B, n_heads_, T, head_dim_})  // (B, H, T, hd)
                           .transpose(1, 2)
                           .reshape({B, T, n_heads_ * head_dim_});
  return o_proj_->forward(y);  // (B, T, C)
}

MlpImpl::MlpImpl(const ModelArch& a) {
  const int64_t c = a.hidden_size, f = a.intermediate_size;
  AddLinear("gate_proj", std::make_shared<DenseLinear>(c, f, a.mlp_bias), &gate_proj_);
  AddLinear("up_proj", std::make_shared<DenseLinear>(c, f, a.mlp_bias), &up_proj_);
  AddLinear("down_proj", std::make_shared<DenseLinear>(f, c, a.mlp_bias), &down_proj_);
}

at::Tensor MlpImpl::forward(const at::Tensor& x) {
  return down_proj_->forward(at::silu(gate_proj_->forward(x)) * up_proj_->forward(x));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelArch& a, bool rope_interleaved) {
  input_layernorm_ = register_module("input_layernorm", RmsNorm(a.hidden_size, a.rms_norm_eps));
  self_attn_ = register_module("self_attn", Attention(a, rope_interleaved));
  post_attention_layernorm_ =
      register_module("post_attention_layernorm", RmsNorm(a.hidden_size, a.rms_norm_eps));
  mlp_ = register_module("mlp", Mlp(a));
}

at::Tensor DecoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& cos,
                                     const at::Tensor& sin, const at::Tensor& mask, int64_t pos0,
                                     at::Tensor* cache_k, at::Tensor* cache_v) {
  const at::Tensor h = x + self_attn_->forward(input_layernorm_->forward(x), cos, sin, mask, pos0,
                                               cache_k, cache_v);
  return h + mlp_->forward(post_attention_layernorm_->forward(h));
}

DecoderBodyImpl::DecoderBodyImpl(const ModelArch& a, bool rope_interleaved) {
  embed_tokens = register_module("embed_tokens",
                                 torch::nn::Embedding(a.vocab_size, a.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t l = 0; l < a.num_hidden_layers; ++l) {
    layers->push_back(DecoderLayer(a, rope_interleaved));
  }
  norm = register_module("norm", RmsNorm(a.hidden_size, a.rms_norm_eps));
}

DecoderImpl::DecoderImpl(const ModelArch& arch, bool rope_interleaved)
    : arch_(arch), rope_interleaved_(rope_interleaved) {
  CheckRecoverySupportsArch(arch, arch.name);
  if (arch.head_dim <= 0 || arch.head_dim % 2 != 0 || arch.num_key_value_heads <= 0 ||
      arch.num_attention_heads % arch.num_key_value_heads != 0) {
    throw ConfigError(fmt::format("{}: invalid attention shape (heads {}, kv heads {}, "
                                  "head_dim {})",
                                  arch.name, arch.num_attention_heads,
                                  arch.num_key_value_heads, arch.head_dim));
  }
  model_ = register_module("model", DecoderBody(arch, rope_interleaved));
  if (!arch.tie_word_embeddings) {
    lm_head_ = register_module(
        "lm_head", std::make_shared<DenseLinear>(arch.hidden_size, arch.vocab_size, false));
  }
  const int64_t max_pos =
      std::min<int64_t>(std::max<int64_t>(arch.max_position_embeddings, 1), kMaxRopePositions);
  const int64_t half = arch.head_dim / 2;
  const at::Tensor inv_freq =
      1.0 / at::pow(arch.rope_theta,
                    at::arange(0, half, at::kDouble) * 2.0 / static_cast<double>(arch.head_dim));
  const at::Tensor ang = at::outer(at::arange(max_pos, at::kDouble), inv_freq);
  cos_ = register_buffer("rope_cos", at::cos(ang).to(at::kFloat));
  sin_ = register_buffer("rope_sin", at::sin(ang).to(at::kFloat));
}

at::Tensor DecoderImpl::forward(const at::Tensor& ids) { return Forward(ids, nullptr); }

at::Tensor DecoderImpl::Forward(const at::Tensor& ids, KvCache* cache) {
  const int64_t T = ids.size(1);
  const int64_t pos0 = cache ? cache->length : 0;
  if (pos0 + T > cos_.size(0)) {
    throw ConfigError(fmt::format("{}: sequence of {} positions exceeds the model's {} "
                                  "positions",
                                  arch_.name, pos0 + T, cos_.size(0)));
  }
  if (cache && pos0 + T > cache->capacity()) {
    throw InternalError(fmt::format("KV cache overflow: {} + {} > {}", pos0, T,
                                    cache->capacity()));
  }
  // Additive causal mask, shared by all layers: query i (absolute position
  // pos0 + i) sees keys j <= pos0 + i; rows repeat per query head of a group.
  at::Tensor mask;  // (rep*T, S) or undefined when T == 1
  if (T > 1) {
    const int64_t S = pos0 + T;
    const int64_t rep = arch_.num_attention_heads / arch_.num_key_value_heads;
    const at::Tensor qi = at::arange(pos0, S, cos_.options().dtype(at::kLong)).unsqueeze(1);
    const at::Tensor kj = at::arange(S, cos_.options().dtype(at::kLong)).unsqueeze(0);
    mask = at::zeros({T, S}, cos_.options())
               .masked_fill_(kj > qi, -std::numeric_limits<float>::infinity())
               .repeat({rep, 1});
  }
  at::Tensor x = model_->embed_tokens->forward(ids);  // (B, T, C)
  for (size_t l = 0; l < model_->layers->size(); ++l) {
    x = model_->layers->ptr<DecoderLayerImpl>(l)->forward(
        x, cos_, sin_, mask, pos0, cache ? &cache->k[l] : nullptr,
        cache ? &cache->v[l] : nullptr);
  }
  x = model_->norm->forward(x);
  if (cache) cache->length = pos0 + T;
  if (lm_head_) return lm_head_->forward(x);                  // (B, T, V)
  return at::matmul(x, model_->embed_tokens->weight.t());     // (B, T, V)
}

KvCache DecoderImpl::NewCache(int64_t batch, int64_t max_len) const {
  KvCache c;
  const auto opts = cos_.options();
  for (int64_t l = 0; l < arch_.num_hidden_layers; ++l) {
    c.k.push_back(at::zeros({batch, arch_.num_key_value_heads, max_len, arch_.head_dim}, opts));
    c.v.push_back(at::zeros({batch, arch_.num_key_value_heads, max_len, arch_.head_dim}, opts));
  }
  return c;
}

void DecoderImpl::LoadStateDict(const std::map<std::string, at::Tensor>& tensors,
                                const std::string& where) {
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      throw ConfigError(fmt::format("{}: tensor '{}' missing. hint: the checkpoint does not "
                                    "match the architecture ({} layers, hidden {})",
                                    where, name, arch_.num_hidden_layers, arch_.hidden_size));
    }
    if (it->second.sizes() != item.value().sizes()) {
      throw ConfigError(fmt::format("{}: tensor '{}' has shape {}, the architecture expects {}",
                                    where, name, fmt::join(it->second.sizes(), "x"),
                                    fmt::join(item.value().sizes(), "x")));
    }
    item.value().copy_(it->second.to(item.value().options()));
    used.insert(name);
  }
  for (const auto& [name, t] : tensors) {
    if (used.count(name)) continue;
    if (name == "lm_head.weight" && arch_.tie_word_embeddings) continue;  // tied copy
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // recomputed
    throw ConfigError(fmt::format("{}: unexpected tensor '{}'. hint: the checkpoint does not "
                                  "match the architecture",
                                  where, name));
  }
}

std::vector<std::pair<std::string, std::shared_ptr<LinearBase>>> DecoderImpl::Linears() const {
  std::vector<std::pair<std::string, std::shared_ptr<LinearBase>>> out;
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    // Report only the outermost linear (a LoRA wrapper, not its base_layer).
    if (auto lin = std::dynamic_pointer_cast<LinearBase>(item.value())) {
      if (!out.empty() && item.key().rfind(out.back().first + ".", 0) == 0) continue;
      out.emplace_back(item.key(), lin);
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<LinearBase>>> DecoderImpl::SelectLinears(
    const std::vector<std::string>& patterns, const std::string& what) const {
  const auto all = Linears();
  std::vector<std::pair<std::string, std::shared_ptr<LinearBase>>> out;
  for (const auto& p : patterns) {
    bool any = false;
    for (const auto& [name, lin] : all) any = any || PatternMatches(p, name);
    if (!any) {
      // Hint: the distinct layer names with the layer index stripped.
      std::set<std::string> kinds;
      for (const auto& [name, lin] : all) {
        const auto pos = name.find("layers.");
        if (pos == std::string::npos) {
          kinds.insert(name);
        } else {
          const auto dot = name.find('.', pos + 7);
          kinds.insert(name.substr(dot + 1));
        }
      }
      throw ConfigError(fmt::format("{}: pattern '{}' matches no linear layer of {}. hint: "
                                    "available layers (in each of model.layers.0..{}): {}",
                                    what, p, arch_.name, arch_.num_hidden_layers - 1,
                                    fmt::join(kinds, ", ")));
    }
  }
  if (patterns.empty()) {
    throw ConfigError(fmt::format("{}: no layer pattern given. hint: e.g. "
                                  "\"mlp.gate_proj,mlp.up_proj\"",
                                  what));
  }
  for (const auto& [name, lin] : all) {
    for (const auto& p : patterns) {
      if (PatternMatches(p, name)) {
        out.emplace_back(name, lin);
        break;
      }
    }
  }
  return out;
}

void DecoderImpl::ReplaceLinear(const std::string& full_name,
                                std::shared_ptr<LinearBase> layer) {
  const auto dot = full_name.rfind('.');
  if (dot == std::string::npos) {
    if (full_name == "lm_head" && lm_head_) {
      auto dense = std::dynamic_pointer_cast<DenseLinear>(layer);
      if (!dense) throw ConfigError("lm_head can only be replaced by a dense layer");
      lm_head_ = replace_module("lm_head", dense);
      return;
    }
    throw ConfigError("no replaceable linear layer named '" + full_name + "'");
  }
  const std::string parent = full_name.substr(0, dot);
  const auto mods = named_modules("", false);
  const auto* found = mods.find(parent);
  auto host = found ? std::dynamic_pointer_cast<LinearHost>(*found) : nullptr;
  if (!host) throw ConfigError("no replaceable linear layer named '" + full_name + "'");
  host->SetLinear(full_name.substr(dot + 1), std::move(layer));
}

Decoder BuildDecoder(const Checkpoint& checkpoint) {
  Decoder d(checkpoint.arch, checkpoint.rope_interleaved);
  d->LoadStateDict(checkpoint.tensors, checkpoint.arch.name);
  return d;
}

}  // namespace lifeline::recovery
