#include "recovery/deploy/deploy.hpp"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <torch/types.h>

#include "common/error.hpp"
#include "common/yaml_util.hpp"
#include "recovery/lora/lora_linear.hpp"

namespace lifeline::recovery {

namespace {

constexpr const char* kTiedHead = "lm_head";

// The run's QuantConfig of a plan format (INTb only).
QuantConfig ConfigOf(const WeightFormat& f) {
  return QuantConfig{f.bits, f.group_size,
                     f.metadata == QuantMetadata::kScaleBf16 ? QuantScheme::kSymmetric : QuantScheme::kAsymmetric};
}

std::string FormatName(const WeightFormat& f) {
  if (!f.Quantized()) return "BF16";
  return fmt::format("INT{} g{} {}", f.bits, f.group_size, QuantSchemeName(ConfigOf(f).scheme));
}

bool SameQuantizer(const QuantConfig& a, const QuantConfig& b) {
  return a.bits == b.bits && a.group == b.group && a.scheme == b.scheme;
}

// The weight matrix of every linear the plan covers, by recovery name, in
// model order: (name, weight (out, in), LoRA layer or null).
struct Stored {
  std::string name;
  at::Tensor weight;                  // the stored tensor (base weight, or the tied embedding)
  std::shared_ptr<LoraLinear> lora;   // adapters of this layer, if any
};

std::vector<Stored> StoredWeights(const Decoder& model) {
  std::vector<Stored> out;
  for (const auto& [name, lin] : model->Linears()) {
    Stored s{name, lin->BaseWeight(), std::dynamic_pointer_cast<LoraLinear>(lin)};
    out.push_back(s);
  }
  if (model->arch().tie_word_embeddings) {
    for (const auto& item : model->named_parameters()) {
      if (item.key() == "model.embed_tokens.weight") out.push_back({kTiedHead, item.value(), nullptr});
    }
  }
  return out;
}

}  // namespace

std::string DeployVariantName(DeployVariant v) { return v == DeployVariant::kAttached ? "attached" : "merged"; }

std::string RooflineOpName(const std::string& name) {
  std::string n = name.rfind("model.", 0) == 0 ? name.substr(6) : name;
  const auto pos = n.find(".self_attn.");
  if (pos != std::string::npos) n = n.substr(0, pos) + ".attn." + n.substr(pos + 11);
  return n;
}

QuantPlan ResolveDeployPlan(const std::string& name_or_path, const ModelArch& arch, const std::string& flag) {
  if (name_or_path.empty())
    throw MakeConfigError(flag, "deploy_plan", "empty", "a plan preset (e.g. w4w2-gateup) or a plan YAML path");
  const auto presets = PresetPlanNames();
  if (!std::filesystem::is_regular_file(name_or_path) &&
      std::find(presets.begin(), presets.end(), name_or_path) == presets.end()) {
    const std::string guess = DidYouMean(name_or_path, presets);
    throw MakeConfigError(flag, "deploy_plan", fmt::format("'{}' is neither a plan preset nor a file", name_or_path),
                          fmt::format("a plan YAML path or one of: {}", fmt::join(presets, ", ")),
                          guess.empty() ? "for stories260K: experiments/plans/stories260k_w4w2_gateup.yaml"
                                        : "did you mean '" + guess + "'?");
  }
  const QuantPlan plan = ResolveQuantPlan(name_or_path, arch);
  // bf16/f16 round the KV cache far less than the weights' formats; int8, int4 and fp8 would change the
  // deployed model's accuracy in a way the float32 evaluation does not show.
  if (plan.kv_dtype != KvDtype::kBf16 && plan.kv_dtype != KvDtype::kF16)
    throw MakeConfigError(plan.source, "kv_cache_dtype",
                          fmt::format("plan '{}' stores the KV cache as {}, which the recovery decoder does not "
                                      "emulate (its KV cache is float32)",
                                      plan.name, KvDtypeName(plan.kv_dtype)),
                          "kv_cache_dtype bf16 or f16 for --deploy-plan",
                          "deploy the weights with a plan of the same rules and a bf16 KV cache");
  for (const QuantRule& r : plan.rules) {
    if (r.format.ggml)
      throw MakeConfigError(r.where, "format",
                            fmt::format("plan '{}' stores '{}' as the ggml layout {}, which recovery's packed export "
                                        "does not implement",
                                        plan.name, r.pattern, r.format.Label()),
                            "rules with bits/group_size (INT2/3/4/8 groups or 16 = BF16)",
                            "use the INTb plan of the same bits (e.g. w4w2-gateup instead of gguf-w4w2-gateup)");
    if (r.format.Quantized() && r.format.metadata == QuantMetadata::kScaleBf16ZeroBf16)
      throw MakeConfigError(r.where, "metadata",
                            "scale_bf16_zero_bf16 (a BF16 zero point) is not implemented by recovery's packed export",
                            "scale_bf16_zero_packed (asymmetric) or scale_bf16 (symmetric)");
  }
  return plan;
}

std::vector<DeployedWeight> ExportDeployed(const Decoder& model, const QuantPlan& plan, DeployVariant variant,
                                           const BaseGrid& grid) {
  torch::NoGradGuard no_grad;
  const auto stored = StoredWeights(model);
  std::vector<int> hits(plan.rules.size(), 0);
  std::vector<DeployedWeight> out;
  for (const Stored& s : stored) {
    DeployedWeight d;
    d.name = s.name;
    d.op_name = RooflineOpName(s.name);
    int rule = -1;
    const WeightFormat f = plan.FormatFor(d.op_name, &rule);
    if (rule >= 0) ++hits[static_cast<size_t>(rule)];
    d.format = FormatName(f);
    at::Tensor w = s.weight.detach().to(at::kCPU).to(at::kFloat);  // (out, in)
    const bool merge = variant == DeployVariant::kMerged && s.lora && !s.lora->merged();
    if (merge) w = w + at::matmul(s.lora->lora_B(), s.lora->lora_A()).to(at::kCPU) * s.lora->config().Scaling();
    if (s.name == kTiedHead && !s.lora && model->arch().tie_word_embeddings && f.Quantized())
      throw MakeConfigError(rule >= 0 ? plan.rules[static_cast<size_t>(rule)].where : plan.source, "lm_head",
                            fmt::format("plan '{}' quantizes the LM head ({}), which {} ties to the embedding table: "
                                        "the roofline counts a quantized LM head as a second copy beside the BF16 "
                                        "table, and the recovery decoder holds only the one tied table",
                                        plan.name, d.format, model->arch().name),
                            "lm_head left BF16 for a model with tied embeddings",
                            "put {pattern: lm_head, bits: 16} before the plan's catch-all rule");
    if (!f.Quantized()) {
      d.bf16 = w.to(at::kBFloat16).contiguous();
      d.source = "bf16";
      out.push_back(std::move(d));
      continue;
    }
    const QuantRule& r = plan.rules[static_cast<size_t>(rule)];
    const QuantConfig cfg = ConfigOf(f);
    if (w.size(1) % cfg.group != 0)
      throw MakeConfigError(r.where, "group_size",
                            fmt::format("group size {} does not divide the input dimension {} of {} (pattern '{}', "
                                        "plan '{}')",
                                        cfg.group, w.size(1), d.op_name, r.pattern, plan.name),
                            fmt::format("a group size dividing {}", w.size(1)),
                            "write a plan YAML for this model (e.g. experiments/plans/stories260k_w4w2_gateup.yaml)");
    auto g = grid.codes.find(s.name);
    if (g != grid.codes.end() && !merge) {
      if (!SameQuantizer(cfg, grid.quant))
        throw MakeConfigError(r.where, r.pattern,
                              fmt::format("plan '{}' stores {} as {}, but the run trained it on {} (--bits, --group, "
                                          "--scheme): the deployed weight would not be the one the adapters were "
                                          "trained on",
                                          plan.name, s.name, d.format,
                                          FormatName(WeightFormat{grid.quant.bits, grid.quant.group,
                                                                  grid.quant.scheme == QuantScheme::kSymmetric
                                                                      ? QuantMetadata::kScaleBf16
                                                                      : QuantMetadata::kScaleBf16ZeroPacked})),
                              "a plan whose rule for this layer is the run's quantizer",
                              "choose a plan matching --bits/--group/--scheme on --layers, or change them");
      d.packed = PackQuantized(g->second, cfg);
      d.source = "trained grid";
    } else {
      d.packed = PackWeight(w, cfg, s.name);
      d.source = "quantized per plan";
    }
    d.quantized = true;
    out.push_back(std::move(d));
  }
  for (size_t i = 0; i < hits.size(); ++i) {
    if (hits[i] == 0)
      throw MakeConfigError(plan.rules[i].where, "pattern",
                            fmt::format("rule '{}' of plan '{}' matches no linear of {}", plan.rules[i].pattern,
                                        plan.name, model->arch().name),
                            "a pattern over operator names such as layers.0.attn.q_proj, layers.0.mlp.gate_proj, "
                            "lm_head",
                            "remove the rule or fix its pattern");
  }
  return out;
}

void LoadDeployed(Decoder& model, const std::vector<DeployedWeight>& weights, DeployVariant variant) {
  torch::NoGradGuard no_grad;
  std::map<std::string, const DeployedWeight*> by_name;
  for (const auto& w : weights) by_name[w.name] = &w;
  for (Stored& s : StoredWeights(model)) {
    auto it = by_name.find(s.name);
    LIFELINE_CHECK(it != by_name.end(), "no deployed weight for " + s.name);
    if (variant == DeployVariant::kMerged && s.lora) s.lora->Merge();
    const DeployedWeight& d = *it->second;
    const at::Tensor decoded = d.quantized ? UnpackWeight(d.packed) : d.bf16.to(at::kFloat);
    s.weight.copy_(decoded);
  }
}

nlohmann::json RunDeployVariants(Decoder& model, const QuantPlan& plan, const BaseGrid& grid,
                                 const nlohmann::json& as_trained_metrics, const MetricsFn& metrics) {
  nlohmann::json j;
  j["plan"] = plan.name;
  j["plan_source"] = plan.source;
  j["kv_cache"] = fmt::format("float32 in the evaluation (the plan's {} KV cache is not emulated)",
                              KvDtypeName(plan.kv_dtype));
  j["variants"]["as_trained"] = {{"metrics", as_trained_metrics},
                                 {"note", "the trained student as evaluated above (float adapters, trained base)"}};
  // Keep every stored tensor to restore the trained model afterwards.
  std::vector<at::Tensor> saved;
  for (const Stored& s : StoredWeights(model)) saved.push_back(s.weight.detach().clone());
  for (DeployVariant v : {DeployVariant::kAttached, DeployVariant::kMerged}) {
    const auto weights = ExportDeployed(model, plan, v, grid);
    LoadDeployed(model, weights, v);
    nlohmann::json vj;
    int64_t bytes = 0;
    for (const auto& w : weights) {
      bytes += w.Bytes();
      vj["weights"].push_back({{"name", w.name}, {"op", w.op_name}, {"format", w.format}, {"source", w.source},
                               {"bytes", w.Bytes()}});
    }
    vj["weight_bytes_total"] = bytes;
    int64_t adapter_params = 0;
    for (const auto& [name, l] : LoraLayers(model)) adapter_params += l->lora_A().numel() + l->lora_B().numel();
    vj["adapter_parameters"] = v == DeployVariant::kAttached ? adapter_params : 0;
    vj["metrics"] = metrics(model);
    j["variants"][DeployVariantName(v)] = vj;
    // Restore: unmerge (merged flag) and copy the trained tensors back.
    for (const auto& [name, l] : LoraLayers(model)) l->Unmerge();
    torch::NoGradGuard no_grad;
    auto now = StoredWeights(model);
    for (size_t i = 0; i < now.size(); ++i) now[i].weight.copy_(saved[i]);
  }
  return j;
}

}  // namespace lifeline::recovery
