#include "roofline/eval/footprint.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace lifeline {

FootprintProfile::FootprintProfile(const ModelGraph& g)
    : decode_(g.options.phase == Phase::kDecode), batch_(g.options.batch), prompt_tokens_(g.options.prompt_tokens) {
  // Tokens of one sequence in this step: a kv_append writes batch x these.
  const double step_tokens = static_cast<double>(batch_) * static_cast<double>(decode_ ? 1 : prompt_tokens_);
  std::map<int, std::pair<double, int64_t>> layers;  // layer -> (KV bytes per token, window)
  std::set<std::tuple<double, double, int64_t>> acts;
  for (auto v : g.order) {
    const OpNode& n = g.graph[v];
    const double stored = n.stored_weight_bytes ? *n.stored_weight_bytes : n.weight_bytes + n.weight_meta_bytes;
    // A tied LM head left in BF16 is the embedding table itself.
    const bool shares_table =
        n.name == "lm_head" && g.arch.tie_word_embeddings && n.linear_format == LinearFormat::kBf16;
    if (!shares_table) weight_bytes_ += stored;
    if (n.kind == OpKind::kKvAppend) layers[n.layer].first += n.kv_write_bytes / step_tokens;
    if (n.kind == OpKind::kAttention || n.kind == OpKind::kQkMatmul) layers[n.layer].second = n.context_cap;
    acts.insert({n.act_read_bytes + n.act_write_bytes,
                  decode_ ? n.act_read_bytes_per_ctx + n.act_write_bytes_per_ctx : 0.0, n.context_cap});
  }
  std::map<int64_t, double> by_cap;
  for (const auto& [layer, kv] : layers) by_cap[kv.second] += kv.first;
  for (const auto& [cap, bytes] : by_cap) kv_.push_back({bytes, cap});
  // Distinct activation terms; the largest at a context is the workspace.
  for (const auto& [bytes, per_ctx, cap] : acts) act_.push_back({bytes, per_ctx, cap});
}

Footprint FootprintProfile::At(int64_t context_tokens) const {
  Footprint f;
  f.batch = batch_;
  f.cached_tokens = decode_ ? context_tokens : prompt_tokens_;
  f.weight_bytes = weight_bytes_;
  for (const Kv& kv : kv_) {
    const int64_t kept = kv.cap > 0 ? std::min(f.cached_tokens, kv.cap) : f.cached_tokens;
    f.kv_cache_bytes_per_token += kv.bytes_per_token;
    f.kv_cache_bytes += kv.bytes_per_token * static_cast<double>(kept) * static_cast<double>(batch_);
  }
  for (const Act& a : act_) {
    const double c = static_cast<double>(a.cap > 0 ? std::min(context_tokens, a.cap) : context_tokens);
    f.activation_workspace_bytes = std::max(f.activation_workspace_bytes, a.bytes + a.bytes_per_ctx * c);
  }
  f.total_bytes = f.weight_bytes + f.kv_cache_bytes + f.activation_workspace_bytes;
  return f;
}

Footprint ComputeFootprint(const ModelGraph& g, int64_t context_tokens) {
  return FootprintProfile(g).At(context_tokens);
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
