#include "roofline/eval/parallel.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "common/error.hpp"

namespace lifeline {
namespace {

constexpr double kActBytes = 2.0;        // BF16 activations, as the builder counts them
constexpr double kArgmaxPairBytes = 8.0; // fp32 logit + int32 token id per sequence and rank

std::string Divisors(int64_t n, int64_t at_most = 0) {
  std::string s;
  for (int64_t d = 1; d <= n; ++d) {
    if (n % d == 0 && (at_most == 0 || d <= at_most)) s += (s.empty() ? "" : ", ") + std::to_string(d);
  }
  return s;
}

// All-gather of `total_bytes` (each device holds 1/n): (n-1)/n of it per link.
CommCost AllGather(double total_bytes, int64_t n, const Interconnect& ic) {
  CommCost c;
  if (n <= 1) return c;
  const double nd = static_cast<double>(n);
  c.bytes = (nd - 1) / nd * total_bytes;
  const double hops = ic.topology == Topology::kRing ? nd - 1 : 1.0;
  c.seconds = c.bytes / ic.link_bytes_per_s + hops * ic.latency_s;
  return c;
}

}  // namespace

CommCost AllReduce(double message_bytes, int64_t n, const Interconnect& ic) {
  CommCost c;
  if (n <= 1) return c;
  const double nd = static_cast<double>(n);
  c.bytes = 2.0 * (nd - 1) / nd * message_bytes;
  const double hops = ic.topology == Topology::kRing ? 2.0 * (nd - 1) : 2.0;
  c.seconds = c.bytes / ic.link_bytes_per_s + hops * ic.latency_s;
  return c;
}

CommCost AllToAll(double bytes_per_device, int64_t n, const Interconnect& ic) {
  CommCost c;
  if (n <= 1) return c;
  const double nd = static_cast<double>(n);
  c.bytes = (nd - 1) / nd * bytes_per_device;
  if (ic.topology == Topology::kRing) {
    // Device i sends bytes/n to each of the n-1 others, d hops away for
    // d = 1..n-1: each link carries sum_d d * bytes / n / n per device, n devices.
    const double per_link = bytes_per_device * (nd - 1) / 2.0;
    c.seconds = per_link / ic.link_bytes_per_s + (nd - 1) * ic.latency_s;
  } else {
    c.seconds = c.bytes / ic.link_bytes_per_s + ic.latency_s;
  }
  return c;
}

CommCost PointToPoint(double bytes, const Interconnect& ic) {
  return CommCost{bytes, bytes / ic.link_bytes_per_s + ic.latency_s};
}

ModelArch ShardArch(const ModelArch& arch, int64_t tp, const std::string& where) {
  if (tp < 1) throw MakeConfigError(where, "tp", "must be positive", "an integer >= 1", "");
  ModelArch s = arch;
  if (tp == 1) return s;
  const std::string model = "model '" + arch.name + "'";
  if (arch.num_attention_heads % tp != 0) {
    throw MakeConfigError(where, "tp",
                          fmt::format("{} does not divide num_attention_heads = {} of {}", tp,
                                      arch.num_attention_heads, model),
                          "a divisor of num_attention_heads: " + Divisors(arch.num_attention_heads),
                          "tensor parallelism gives each device whole attention heads");
  }
  s.num_attention_heads = arch.num_attention_heads / tp;
  if (arch.num_key_value_heads % tp == 0) {
    s.num_key_value_heads = arch.num_key_value_heads / tp;
  } else if (tp % arch.num_key_value_heads == 0) {
    s.num_key_value_heads = 1;  // each KV head replicated on tp / kv devices
  } else {
    throw MakeConfigError(where, "tp",
                          fmt::format("{} neither divides nor is a multiple of num_key_value_heads = {} of {}", tp,
                                      arch.num_key_value_heads, model),
                          "a divisor or multiple of " + std::to_string(arch.num_key_value_heads),
                          "each device needs whole KV heads (replicated when tp exceeds them)");
  }
  if (arch.intermediate_size % tp != 0) {
    throw MakeConfigError(where, "tp",
                          fmt::format("{} does not divide intermediate_size = {} of {}", tp, arch.intermediate_size,
                                      model),
                          "a divisor of intermediate_size", "the FFN's columns are split over the devices");
  }
  s.intermediate_size = arch.intermediate_size / tp;
  auto split = [&](int64_t value, const char* key) {
    if (value % tp != 0) {
      throw MakeConfigError(where, "tp", fmt::format("{} does not divide {} = {} of {}", tp, key, value, model),
                            std::string("a divisor of ") + key, "each expert's columns are split over the devices");
    }
    return value / tp;
  };
  if (arch.moe_intermediate_size > 0) s.moe_intermediate_size = split(arch.moe_intermediate_size, "moe_intermediate_size");
  if (arch.shared_expert_intermediate_size > 0)
    s.shared_expert_intermediate_size = split(arch.shared_expert_intermediate_size, "shared_expert_intermediate_size");
  // MLA: the compressed KV latent (kv_lora_rank + qk_rope_head_dim per token)
  // is shared by all heads, so every device keeps all of it.
  s.vocab_size = (arch.vocab_size + tp - 1) / tp;  // the LM head's vocabulary slice, rounded up
  s.head_dim = arch.head_dim;
  return s;
}

int64_t CheckParallelConfig(const ModelArch& arch, const ParallelConfig& c, int64_t batch, const SystemSpec& s,
                            Fidelity fidelity) {
  auto positive = [](int64_t v, const char* flag, const char* key) {
    if (v < 1) throw MakeConfigError(flag, key, "must be positive, got " + std::to_string(v), "an integer >= 1", "");
  };
  positive(c.tp, "--tp", "tp");
  positive(c.pp, "--pp", "pp");
  positive(c.ep, "--ep", "ep");
  if (c.micro_batches < 0) {
    throw MakeConfigError("--micro-batches", "micro_batches", "must not be negative", "0 (automatic) or >= 1", "");
  }
  if (c.tp > s.count || c.pp > s.count || c.ep > s.count || c.Devices() > s.count) {
    throw MakeConfigError(s.file.empty() ? "--tp" : s.file, "count",
                          fmt::format("tp {} x pp {} x ep {} = {} devices, but system '{}' has {}", c.tp, c.pp, c.ep,
                                      c.tp * c.pp * c.ep, s.name, s.count),
                          fmt::format("tp x pp x ep <= {}", s.count),
                          s.count == 1 ? "give --system hwspec/systems/<name>.yaml for several devices"
                                       : "lower --tp, --pp or --ep");
  }
  if (c.tp > 1 && fidelity == Fidelity::kPaper) {
    throw MakeConfigError("--tp", "fidelity",
                          "paper fidelity takes head_dim as hidden/heads of the whole model, which a shard of heads "
                          "cannot keep",
                          "--fidelity exact with --tp > 1", "pass --fidelity exact");
  }
  (void)ShardArch(arch, c.tp, "--tp");
  if (c.pp > arch.num_hidden_layers) {
    throw MakeConfigError("--pp", "pp",
                          fmt::format("{} stages but model '{}' has {} layers (num_hidden_layers)", c.pp, arch.name,
                                      arch.num_hidden_layers),
                          "pp <= " + std::to_string(arch.num_hidden_layers), "");
  }
  if (c.ep > 1) {
    if (!arch.IsMoe()) {
      throw MakeConfigError("--ep", "ep", "model '" + arch.name + "' has no experts (num_local_experts = 0)",
                            "--ep 1 for a dense model", "");
    }
    if (arch.num_local_experts % c.ep != 0) {
      throw MakeConfigError("--ep", "ep",
                            fmt::format("{} does not divide num_local_experts = {} of model '{}'", c.ep,
                                        arch.num_local_experts, arch.name),
                            "a divisor of num_local_experts: " + Divisors(arch.num_local_experts), "");
    }
  }
  if (batch % c.ep != 0) {
    throw MakeConfigError("--batch", "batch",
                          fmt::format("{} sequences do not split over ep = {} attention groups", batch, c.ep),
                          "a multiple of " + std::to_string(c.ep), "");
  }
  const int64_t group = batch / c.ep;
  if (c.micro_batches == 0) {
    int64_t m = 1;
    for (int64_t d = 1; d <= std::min(group, c.pp); ++d) {
      if (group % d == 0) m = d;
    }
    return m;
  }
  if (group % c.micro_batches != 0) {
    throw MakeConfigError("--micro-batches", "micro_batches",
                          fmt::format("{} does not divide the {} sequences of each group (batch {} / ep {})",
                                      c.micro_batches, group, batch, c.ep),
                          "a divisor of " + std::to_string(group) + ": " + Divisors(group), "");
  }
  return c.micro_batches;
}

bool IsRoutedExpertOp(const OpNode& n) {
  return n.name.find(".mlp.experts.") != std::string::npos && n.kind != OpKind::kMoeCombine;
}

ParallelModel::ParallelModel(const ModelArch& arch, const QuantPlan& plan, const BuildOptions& options,
                             const SystemSpec& system, const ParallelConfig& config)
    : system_(system), config_(config), options_(options) {
  micro_batches_ = CheckParallelConfig(arch, config, options.batch, system, options.fidelity);
  micro_batch_ = options.batch / config.ep / micro_batches_;
  shard_ = ShardArch(arch, config.tp, "--tp");
  experts_per_tok_ = arch.num_experts_per_tok;
  BuildOptions o = options;
  o.batch = micro_batch_;
  ModelGraph g = BuildModelGraph(shard_, plan, o);
  if (config.ep > 1) {
    // Routed experts see the tokens of every group: build at the whole
    // micro-batch over all groups and keep 1/ep of that work and of the
    // stored experts (balanced routing).
    BuildOptions all = o;
    all.batch = micro_batch_ * config.ep;
    const ModelGraph whole = BuildModelGraph(shard_, plan, all);
    const double inv = 1.0 / static_cast<double>(config.ep);
    auto [vi, vend] = boost::vertices(g.graph);
    for (; vi != vend; ++vi) {
      OpNode& n = g.graph[*vi];
      if (!IsRoutedExpertOp(n)) continue;
      const OpNode& w = whole.graph[*vi];
      LIFELINE_CHECK(w.name == n.name, "graphs at two batches differ in topology");
      n.flops = w.flops * inv;
      n.flops_per_ctx = w.flops_per_ctx * inv;
      n.expert_unpack_ops = w.expert_unpack_ops * inv;
      n.weight_bytes = w.weight_bytes * inv;
      n.weight_meta_bytes = w.weight_meta_bytes * inv;
      n.stored_weight_bytes = (w.stored_weight_bytes ? *w.stored_weight_bytes : w.weight_bytes + w.weight_meta_bytes) * inv;
      n.act_read_bytes = w.act_read_bytes * inv;
      n.act_write_bytes = w.act_write_bytes * inv;
      n.act_read_bytes_per_ctx = w.act_read_bytes_per_ctx * inv;
      n.act_write_bytes_per_ctx = w.act_write_bytes_per_ctx * inv;
      n.m = w.m / config.ep;
    }
  }
  // Layers to stages: the first (L mod pp) stages take one layer more.
  const int64_t L = arch.num_hidden_layers, P = config.pp;
  std::vector<int64_t> stage_of_layer(static_cast<size_t>(L));
  for (int64_t s = 0, l = 0; s < P; ++s) {
    const int64_t n = L / P + (s < L % P ? 1 : 0);
    for (int64_t i = 0; i < n; ++i) stage_of_layer[static_cast<size_t>(l++)] = s;
  }
  auto stage_of = [&](const OpNode& n) -> int64_t {
    if (n.layer >= 0) return stage_of_layer[static_cast<size_t>(n.layer)];
    return n.kind == OpKind::kEmbedding ? 0 : P - 1;
  };
  comm_.assign(static_cast<size_t>(P), StageComm{});
  std::vector<bool> moe_layer(static_cast<size_t>(L), false);
  for (auto v : g.order) {
    const OpNode& n = g.graph[v];
    if (n.layer >= 0 && IsRoutedExpertOp(n)) moe_layer[static_cast<size_t>(n.layer)] = true;
  }
  for (int64_t l = 0; l < L; ++l) {
    StageComm& c = comm_[static_cast<size_t>(stage_of_layer[static_cast<size_t>(l)])];
    c.layers += 1;
    c.moe_layers += moe_layer[static_cast<size_t>(l)] ? 1 : 0;
  }
  comm_.back().last = true;
  if (P == 1) {
    stages_.push_back(std::move(g));
    return;
  }
  for (int64_t s = 0; s < P; ++s) {
    ModelGraph sg = g;
    sg.order.clear();
    for (auto v : g.order) {
      if (stage_of(g.graph[v]) == s) sg.order.push_back(v);
    }
    stages_.push_back(std::move(sg));
  }
}

ParallelStep ParallelModel::Evaluate(int64_t context_tokens) const {
  const Interconnect& ic = system_.interconnect;
  const bool prefill = options_.phase == Phase::kPrefill;
  const double seq_tokens = prefill ? static_cast<double>(options_.prompt_tokens) : 1.0;
  const double tokens = static_cast<double>(micro_batch_) * seq_tokens;
  const double hidden = static_cast<double>(shard_.hidden_size);
  ParallelStep r;
  r.micro_batches = micro_batches_;
  r.micro_batch = micro_batch_;
  r.tp_allreduce_message_bytes = tokens * hidden * kActBytes;
  const CommCost ar = AllReduce(r.tp_allreduce_message_bytes, config_.tp, ic);
  r.tp_allreduce_bytes_per_layer = 2 * ar.bytes;  // after the attention block and after the FFN
  // Each of the tp ranks of a group sends its 1/tp share of the routed tokens.
  const double a2a_data = tokens * static_cast<double>(experts_per_tok_) * hidden * kActBytes /
                          static_cast<double>(config_.tp);
  const CommCost a2a = AllToAll(a2a_data, config_.ep, ic);
  r.ep_alltoall_bytes_per_layer = 2 * a2a.bytes;  // dispatch and combine
  // The last stage's greedy sampling: each TP rank arg-maxes its vocabulary
  // slice; the (logit, id) pairs are all-gathered.
  const CommCost argmax =
      AllGather(static_cast<double>(config_.tp * micro_batch_) * kArgmaxPairBytes, config_.tp, ic);
  r.pp_transfer_bytes = config_.pp > 1 ? tokens * hidden * kActBytes : 0.0;
  const double x = config_.pp > 1 ? PointToPoint(r.pp_transfer_bytes, ic).seconds : 0.0;
  double sum = 0, worst = 0;
  for (size_t s = 0; s < stages_.size(); ++s) {
    const StepResult sr = EvaluateStep(stages_[s], system_.device, context_tokens);
    const StageComm& c = comm_[s];
    const double tp_s = static_cast<double>(c.layers) * 2 * ar.seconds + (c.last ? argmax.seconds : 0.0);
    const double ep_s = static_cast<double>(c.moe_layers) * 2 * a2a.seconds;
    const double t = sr.total_s + tp_s + ep_s;
    r.tp_comm_s += tp_s;
    r.ep_comm_s += ep_s;
    r.stage_s.push_back(t);
    sum += t;
    worst = std::max(worst, t);
  }
  const double P = static_cast<double>(config_.pp), m = static_cast<double>(micro_batches_);
  r.pp_comm_s = (P - 1) * x;
  if (prefill) {
    // GPipe schedule: the last micro-batch leaves the last stage after
    // (m - 1) slots of the slowest stage plus one pass through all stages.
    r.step_s = sum + r.pp_comm_s + (m - 1) * worst;
    r.tokens_per_s = static_cast<double>(options_.batch) * seq_tokens / r.step_s;
  } else {
    // A micro-batch's next token needs one pass through every stage; each
    // stage serves the m micro-batches one after another.
    r.step_s = std::max(sum + r.pp_comm_s, m * worst);
    r.tokens_per_s = static_cast<double>(options_.batch) / r.step_s;
  }
  r.bubble_fraction = std::max(0.0, 1.0 - m * (sum / P) / r.step_s);
  return r;
}

Footprint ParallelModel::DeviceFootprint(int64_t context_tokens) const {
  Footprint worst;
  for (const ModelGraph& sg : stages_) {
    Footprint f = ComputeFootprint(sg, context_tokens);
    // A tied BF16 LM head on a stage without the embedding is a second copy.
    if (stages_.size() > 1 && sg.arch.tie_word_embeddings) {
      bool has_embedding = false;
      const OpNode* head = nullptr;
      for (auto v : sg.order) {
        const OpNode& n = sg.graph[v];
        if (n.kind == OpKind::kEmbedding) has_embedding = true;
        if (n.name == "lm_head") head = &n;
      }
      if (head && !has_embedding && head->linear_format == LinearFormat::kBf16) {
        f.weight_bytes += head->stored_weight_bytes ? *head->stored_weight_bytes
                                                    : head->weight_bytes + head->weight_meta_bytes;
      }
    }
    // Every micro-batch's sequences keep their cache on the stage.
    f.kv_cache_bytes *= static_cast<double>(micro_batches_);
    f.batch *= micro_batches_;
    f.total_bytes = f.weight_bytes + f.kv_cache_bytes + f.activation_workspace_bytes;
    if (f.total_bytes > worst.total_bytes) worst = f;
  }
  return worst;
}

}  // namespace lifeline
