#include "roofline/whatif/deploy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "roofline/eval/evaluator.hpp"

namespace lifeline {

QuantPlan WithoutAdapters(const QuantPlan& p) {
  QuantPlan q = p;
  q.adapters.clear();
  return q;
}

AdapterCost EvaluateAdapterCost(const ModelGraph& g, const DeviceSpec& d, int64_t context_tokens) {
  AdapterCost c;
  c.notes = g.notes;
  const ModelGraph plain = BuildModelGraph(g.arch, WithoutAdapters(g.plan), g.options);
  const GraphTotals with = SumGraph(g, context_tokens), without = SumGraph(plain, context_tokens);
  c.weight_bytes = (with.weight_bytes + with.weight_meta_bytes) - (without.weight_bytes + without.weight_meta_bytes);
  c.flops = with.flops - without.flops;
  c.act_bytes = with.act_bytes - without.act_bytes;
  c.dispatches = with.dispatches - without.dispatches;
  for (auto v : g.order) {
    if (g.graph[v].name.ends_with(".lora_A")) ++c.attached_linears;
  }
  c.step_s = EvaluateStep(g, d, context_tokens).total_s;
  c.step_s_without = EvaluateStep(plain, d, context_tokens).total_s;
  c.tps_cost_pct = c.step_s > 0 ? 100.0 * (1.0 - c.step_s_without / c.step_s) : 0.0;
  return c;
}

double ExpectedTokensPerStep(int64_t k, double a) {
  if (a >= 1.0) return static_cast<double>(k + 1);
  return (1.0 - std::pow(a, static_cast<double>(k + 1))) / (1.0 - a);
}

SpeculativeResult SpeculativeFromTimes(int64_t k, double acceptance, double draft_s, double verify_s,
                                       double target_step_s) {
  SpeculativeResult r;
  r.tokens_per_step = ExpectedTokensPerStep(k, acceptance);
  r.draft_s = draft_s;
  r.verify_s = verify_s;
  r.step_s = draft_s + verify_s;
  r.tps = r.step_s > 0 ? r.tokens_per_step / r.step_s : 0.0;
  r.target_tps = target_step_s > 0 ? 1.0 / target_step_s : 0.0;
  r.speedup = r.target_tps > 0 ? r.tps / r.target_tps : 0.0;
  return r;
}

namespace {

void CheckSpeculative(const SpeculativeSpec& s, const ModelArch& target) {
  if (s.k < 1 || s.k > 64) {
    throw MakeConfigError("speculative.k", "speculative.k", "must be in 1..64, got " + std::to_string(s.k),
                          "tokens drafted per target step", "published settings use 2 to 8");
  }
  if (!(s.acceptance >= 0.0 && s.acceptance <= 1.0)) {
    throw MakeConfigError("speculative.acceptance", "speculative.acceptance",
                          fmt::format("must be in [0, 1], got {}", s.acceptance),
                          "the probability that the target accepts a drafted token", "");
  }
  if (s.draft.vocab_size != target.vocab_size) {
    throw MakeConfigError("speculative.draft_model", "speculative.draft_model",
                          fmt::format("draft {} has a vocabulary of {} tokens, the target {} one of {}", s.draft.name,
                                      s.draft.vocab_size, target.name, target.vocab_size),
                          "a draft sharing the target's tokenizer",
                          "speculative decoding compares the two models' distributions token by token");
  }
}

}  // namespace

SpeculativeResult EvaluateSpeculative(const ModelArch& target, const QuantPlan& target_plan,
                                      const SpeculativeSpec& spec, const BuildOptions& decode,
                                      const DeviceSpec& d, int64_t context_tokens) {
  CheckSpeculative(spec, target);
  BuildOptions dec = decode;
  dec.phase = Phase::kDecode;
  const ModelGraph draft = BuildModelGraph(spec.draft, spec.draft_plan, dec);
  double draft_s = 0;
  for (int64_t i = 0; i < spec.k; ++i) draft_s += EvaluateStep(draft, d, context_tokens + i).total_s;
  // Verification: k + 1 new tokens after context - 1 cached ones, so the
  // first attends `context` tokens as a decode step does; every position's
  // logits. Charged per operator (sum of op times) like a decode step.
  BuildOptions ver = dec;
  ver.phase = Phase::kPrefill;
  ver.prompt_tokens = spec.k + 1;
  ver.past_tokens = context_tokens - 1;
  ver.all_logits = true;
  const StepResult v = EvaluateStep(BuildModelGraph(target, target_plan, ver), d, context_tokens);
  double verify_s = 0;
  for (const auto& op : v.ops) verify_s += op.total_s;
  const double target_s = EvaluateStep(BuildModelGraph(target, target_plan, dec), d, context_tokens).total_s;
  return SpeculativeFromTimes(spec.k, spec.acceptance, draft_s, verify_s, target_s);
}

ChunkedPrefill EvaluateChunkedPrefill(const ModelArch& arch, const QuantPlan& plan, const BuildOptions& prefill,
                                      const DeviceSpec& d, int64_t chunk_tokens, const std::string& where) {
  const int64_t prompt = prefill.prompt_tokens;
  if (chunk_tokens < 1) {
    throw MakeConfigError(where, "prefill_chunk_tokens", "must be positive, got " + std::to_string(chunk_tokens),
                          "tokens per prefill chunk", "");
  }
  const int64_t chunks = (prompt + chunk_tokens - 1) / chunk_tokens;
  if (chunks > kMaxPrefillChunks) {
    throw MakeConfigError(where, "prefill_chunk_tokens",
                          fmt::format("{} tokens per chunk split the {}-token prompt into {} chunks, beyond the limit "
                                      "of {}",
                                      chunk_tokens, prompt, chunks, kMaxPrefillChunks),
                          fmt::format("at least {} tokens per chunk", (prompt + kMaxPrefillChunks - 1) / kMaxPrefillChunks),
                          "serving engines use chunks of 256 to 8192 tokens");
  }
  ChunkedPrefill r;
  r.chunk_tokens = chunk_tokens;
  BuildOptions o = prefill;
  o.phase = Phase::kPrefill;
  for (int64_t j = 0; j < chunks; ++j) {
    o.past_tokens = prefill.past_tokens + j * chunk_tokens;
    o.prompt_tokens = std::min(chunk_tokens, prompt - j * chunk_tokens);
    r.chunk_s.push_back(EvaluateStep(BuildModelGraph(arch, plan, o), d, 0).total_s);
    r.ttft_s += r.chunk_s.back();
  }
  r.ttft_unchunked_s = EvaluateStep(BuildModelGraph(arch, plan, prefill), d, 0).total_s;
  return r;
}

}  // namespace lifeline
