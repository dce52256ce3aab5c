#include "roofline/eval/footprint.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace lifeline {

Footprint ComputeFootprint(const ModelGraph& g, int64_t context_tokens) {
  Footprint f;
  const bool decode = g.options.phase == Phase::kDecode;
  f.batch = g.options.batch;
  f.cached_tokens = decode ? context_tokens : g.options.prompt_tokens;
  // Tokens of one sequence in this step: a kv_append writes batch x these.
  const double step_tokens =
      static_cast<double>(g.options.batch) * static_cast<double>(decode ? 1 : g.options.prompt_tokens);
  struct LayerKv {
    double bytes_per_token = 0;  // one sequence's one token
    int64_t cap = 0;             // sliding window; 0 = the whole context
  };
  std::map<int, LayerKv> layers;
  for (auto v : g.order) {
    const OpNode& n = g.graph[v];
    f.weight_bytes += n.stored_weight_bytes ? *n.stored_weight_bytes : n.weight_bytes + n.weight_meta_bytes;
    // A tied LM head left in BF16 is the embedding table itself.
    if (n.name == "lm_head" && g.arch.tie_word_embeddings && n.linear_format == LinearFormat::kBf16) {
      f.weight_bytes -= n.stored_weight_bytes ? *n.stored_weight_bytes : n.weight_bytes + n.weight_meta_bytes;
    }
    if (n.kind == OpKind::kKvAppend) layers[n.layer].bytes_per_token += n.kv_write_bytes / step_tokens;
    if (n.kind == OpKind::kAttention || n.kind == OpKind::kQkMatmul) layers[n.layer].cap = n.context_cap;
    const double c = decode ? static_cast<double>(n.context_cap > 0 ? std::min(context_tokens, n.context_cap)
                                                                     : context_tokens)
                            : 0.0;
    const double act = n.act_read_bytes + n.act_write_bytes + (n.act_read_bytes_per_ctx + n.act_write_bytes_per_ctx) * c;
    f.activation_workspace_bytes = std::max(f.activation_workspace_bytes, act);
  }
  for (const auto& [layer, kv] : layers) {
    const int64_t kept = kv.cap > 0 ? std::min(f.cached_tokens, kv.cap) : f.cached_tokens;
    f.kv_cache_bytes_per_token += kv.bytes_per_token;
    f.kv_cache_bytes += kv.bytes_per_token * static_cast<double>(kept) * static_cast<double>(f.batch);
  }
  f.total_bytes = f.weight_bytes + f.kv_cache_bytes + f.activation_workspace_bytes;
  return f;
}

bool FitsDevice(const Footprint& f, const DeviceSpec& d) {
  return d.memory_capacity_bytes <= 0 || f.total_bytes <= d.memory_capacity_bytes;
}

std::string DescribeFootprint(const Footprint& f, const DeviceSpec& d) {
  std::string s = fmt::format(
      "needs {:.3f} GB (weights {:.3f} GB + KV cache {:.3f} GB at {} tokens x batch {} + activation workspace "
      "{:.3f} GB)",
      f.total_bytes / 1e9, f.weight_bytes / 1e9, f.kv_cache_bytes / 1e9, f.cached_tokens, f.batch,
      f.activation_workspace_bytes / 1e9);
  if (d.memory_capacity_bytes > 0) {
    s += fmt::format(" {} {} has {:.3f} GB (memory_capacity_gb)", FitsDevice(f, d) ? "and" : "but", d.name,
                     d.memory_capacity_bytes / 1e9);
  } else {
    s += fmt::format("; {} states no memory_capacity_gb", d.name);
  }
  return s;
}

}  // namespace lifeline
