#pragma once
// The deployed model (2026 paper, section 7): after training, every linear
// is stored as a roofline quantization plan says, with the adapters attached
// or merged, and evaluated as deployed.
//
// A plan (roofline/spec/quant_plan.hpp: a preset such as w4w2-gateup or a
// plan YAML) assigns each linear a format by glob over the roofline's
// operator names; a recovery layer "model.layers.3.self_attn.q_proj" is the
// operator "layers.3.attn.q_proj", "model.layers.3.mlp.gate_proj" is
// "layers.3.mlp.gate_proj", "lm_head" is "lm_head". With tied embeddings the
// LM head is the embedding table; its rule must leave it BF16 (the roofline
// counts a quantized tied head as a second copy, which this decoder does not
// hold), and the table is then rounded to BF16.
//
// Formats: INT2/3/4/8 groups with a BF16 scale and a zero at the weight's bit
// width (`scale_bf16_zero_packed`, asymmetric RTN) or no zero
// (`scale_bf16`, symmetric), packed by recovery/quant/packed.hpp; BF16 (bits
// 16, and linears no rule matches) rounds the weight to BF16. ggml block
// layouts, BF16 zero points and an INT KV cache are refused: the packed
// export does not implement them.
//
// Variants:
//   attached  every base weight stored per the plan, adapters kept beside
//             them in float. A layer the run quantized keeps its trained codes
//             when the plan's format for it is the run's quantizer (and is
//             refused when it is another one).
//   merged    adapters merged (W + s·B·A) and the merged weights quantized per
//             the plan.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "recovery/lora/init.hpp"
#include "recovery/model/decoder.hpp"
#include "recovery/quant/packed.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline::recovery {

enum class DeployVariant { kAttached, kMerged };
std::string DeployVariantName(DeployVariant v);  // "attached" / "merged"

// One stored weight of the deployed model.
struct DeployedWeight {
  std::string name;        // recovery name ("model.layers.0.mlp.gate_proj", "lm_head")
  std::string op_name;     // roofline operator name the plan matched ("layers.0.mlp.gate_proj")
  std::string format;      // "INT2 g32 asym", "INT4 g64 sym", "BF16"
  std::string source;      // "trained grid" | "quantized per plan" | "bf16"
  bool quantized = false;  // packed is set (else bf16 is)
  PackedWeight packed;     // the packed export (INTb)
  at::Tensor bf16;         // (out, in) BF16 (bits 16)
  int64_t Bytes() const { return quantized ? packed.Bytes() : bf16.numel() * 2; }
};

// A preset name or plan YAML, checked against what the deployment can store.
// ConfigError (naming the plan rule's file:line) for a ggml layout, a BF16
// zero point or an INT KV cache; `flag` names the option in errors.
QuantPlan ResolveDeployPlan(const std::string& name_or_path, const ModelArch& arch,
                            const std::string& flag = "--deploy-plan");

// The roofline operator name of a recovery linear.
std::string RooflineOpName(const std::string& recovery_name);

// The stored weights of `model`'s linears for `variant` (the model is not
// changed). `grid` holds the codes of the layers the run quantized. Throws
// ConfigError when a rule's group does not divide a linear's input
// dimension, when a rule matches no linear, when the plan stores a layer
// the run quantized in a different format, or quantizes a tied LM head.
std::vector<DeployedWeight> ExportDeployed(const Decoder& model, const QuantPlan& plan, DeployVariant variant,
                                           const BaseGrid& grid);

// Writes the decoded weights of `weights` into `model` (LoRA layers: their
// base; tied LM head: the embedding table). For kMerged, merges every LoRA
// layer first (forward then skips the adapter branch).
void LoadDeployed(Decoder& model, const std::vector<DeployedWeight>& weights, DeployVariant variant);

// The model's metrics as recovery.json writes them ({metric: {teacher,
// quantized, recovered, ar_pct}}; `recovered` is the evaluated model's value).
using MetricsFn = std::function<nlohmann::json(Decoder&)>;

// Runs both variants on `model` (restored afterwards) and returns recovery.json's
// `deploy` block: {plan, plan_source, variants: {as_trained, attached, merged}}
// where as_trained is `as_trained_metrics` (the recovered evaluation).
nlohmann::json RunDeployVariants(Decoder& model, const QuantPlan& plan, const BaseGrid& grid,
                                 const nlohmann::json& as_trained_metrics, const MetricsFn& metrics);

}  // namespace lifeline::recovery
