#include <cstring>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "common/error.hpp"
#include "recovery/deploy/deploy.hpp"
#include "recovery/lora/init.hpp"
#include "recovery/quant/packed.hpp"
#include "recovery/quant/rtn.hpp"
#include "test_util.hpp"

namespace lifeline::recovery {
namespace {

Decoder Stories() { return BuildDecoder(LoadLlama2cCheckpoint(Stories260kModelPath())); }

QuantPlan Plan(const std::string& yaml) { return ParseQuantPlan(YAML::Load(yaml), "plan.yaml", "test-plan"); }

// gate/up INT2 g32 asym (the run's quantizer), down_proj INT4 per row, q/k
// symmetric INT4 g32, v/o/lm_head BF16 (no rule).
const char* kPlan = R"(
name: test-plan
rules:
  - {pattern: "*gate_proj", bits: 2, group_size: 32}
  - {pattern: "*up_proj", bits: 2, group_size: 32}
  - {pattern: "*down_proj", bits: 4, group_size: 172}
  - {pattern: "*.attn.q_proj", bits: 4, group_size: 32, metadata: scale_bf16}
  - {pattern: "*.attn.k_proj", bits: 4, group_size: 32, metadata: scale_bf16}
)";

bool SameBytes(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kCPU).contiguous(), y = b.to(at::kCPU).contiguous();
  return x.scalar_type() == y.scalar_type() && x.sizes() == y.sizes() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

bool SamePacked(const PackedWeight& a, const PackedWeight& b) {
  return a.bits == b.bits && a.rows == b.rows && a.cols == b.cols && a.group == b.group && a.scheme == b.scheme &&
         a.codes == b.codes && a.scales_bf16 == b.scales_bf16 && a.zeros == b.zeros;
}

struct Trained {
  Decoder teacher = Stories();
  Decoder student = Stories();
  BaseGrid grid;
};

// A stand-in for a trained student: gate/up INT2 g32, LoRA with random B.
Trained MakeTrained() {
  Trained t;
  const QuantConfig q{2, 32, QuantScheme::kAsymmetric};
  std::vector<std::string> names;
  for (const auto& l : FakeQuantizeLayers(t.student, {"mlp.gate_proj", "mlp.up_proj"}, q)) names.push_back(l.name);
  LoraConfig lcfg;
  lcfg.rank = 4;
  lcfg.alpha = 8;
  AttachLora(t.student, lcfg);
  InitializeAdapters(t.student, t.teacher, LoraInit::kStandard, &q, names, 5, &t.grid);
  torch::NoGradGuard g;
  for (auto& [name, l] : LoraLayers(t.student)) l->lora_B().copy_(at::randn_like(l->lora_B()) * 0.05);
  return t;
}

TEST(Deploy, RooflineOperatorNames) {
  EXPECT_EQ(RooflineOpName("model.layers.3.self_attn.q_proj"), "layers.3.attn.q_proj");
  EXPECT_EQ(RooflineOpName("model.layers.3.mlp.gate_proj"), "layers.3.mlp.gate_proj");
  EXPECT_EQ(RooflineOpName("lm_head"), "lm_head");
}

TEST(Deploy, VariantWeightsAreByteIdenticalToThePackedExport) {
  LIFELINE_REQUIRE_STORIES260K();
  const QuantPlan plan = Plan(kPlan);
  for (DeployVariant v : {DeployVariant::kAttached, DeployVariant::kMerged}) {
    SCOPED_TRACE(DeployVariantName(v));
    Trained m = MakeTrained();
    std::map<std::string, at::Tensor> full;  // the full-precision weights
    for (const auto& [name, lin] : m.teacher->Linears()) full[name] = lin->BaseWeight();
    std::map<std::string, at::Tensor> source;
    std::map<std::string, std::shared_ptr<LoraLinear>> lora;
    for (const auto& [name, l] : LoraLayers(m.student)) lora[name] = l;
    for (const auto& [name, lin] : m.student->Linears()) {
      at::Tensor w = lin->BaseWeight().detach().clone();
      if (v == DeployVariant::kMerged && lora.count(name))
        w = w + at::matmul(lora[name]->lora_B(), lora[name]->lora_A()) * lora[name]->config().Scaling();
      source[name] = w;
    }
    const auto weights = ExportDeployed(m.student, plan, v, m.grid);
    LoadDeployed(m.student, weights, v);
    std::map<std::string, at::Tensor> now;
    for (const auto& [name, lin] : m.student->Linears()) now[name] = lin->BaseWeight();
    int quantized = 0, bf16 = 0;
    for (const auto& d : weights) {
      SCOPED_TRACE(d.name);
      if (d.name == "lm_head") {
        // Tied: the embedding table under the LM head's rule (none: BF16).
        EXPECT_EQ(d.format, "BF16");
        continue;
      }
      const WeightFormat f = plan.FormatFor(d.op_name);
      if (!f.Quantized()) {
        ++bf16;
        EXPECT_TRUE(SameBytes(d.bf16, source.at(d.name).to(at::kBFloat16)));
        EXPECT_TRUE(SameBytes(now.at(d.name), d.bf16.to(at::kFloat)));
        continue;
      }
      ++quantized;
      const QuantConfig cfg{f.bits, f.group_size,
                            f.metadata == QuantMetadata::kScaleBf16 ? QuantScheme::kSymmetric
                                                                    : QuantScheme::kAsymmetric};
      // gate/up keep the trained codes (RTN of the full-precision weight)
      // when attached; everything else is the plan's RTN of its source.
      const bool trained_grid = v == DeployVariant::kAttached && lora.count(d.name);
      const PackedWeight expected = PackWeight(trained_grid ? full.at(d.name) : source.at(d.name), cfg, d.name);
      EXPECT_TRUE(SamePacked(d.packed, expected));
      EXPECT_EQ(d.source, trained_grid ? "trained grid" : "quantized per plan");
      EXPECT_TRUE(SameBytes(now.at(d.name), UnpackWeight(expected)));
    }
    EXPECT_EQ(quantized, 5 * 5);  // q, k, gate, up, down in 5 layers
    EXPECT_EQ(bf16, 5 * 2);       // v, o
  }
}

TEST(Deploy, RunVariantsRestoresTheTrainedModel) {
  LIFELINE_REQUIRE_STORIES260K();
  Trained t = MakeTrained();
  const at::Tensor ids = at::randint(3, 512, {2, 16}, at::kLong);
  torch::NoGradGuard g;
  const at::Tensor y0 = t.student->forward(ids);
  std::vector<at::Tensor> outs;
  const nlohmann::json j = RunDeployVariants(t.student, Plan(kPlan), t.grid, {{"x", 1}}, [&](Decoder& m) {
    outs.push_back(m->forward(ids));
    return nlohmann::json{{"max_abs_diff", (outs.back() - y0).abs().max().item<double>()}};
  });
  EXPECT_EQ(j["plan"], "test-plan");
  EXPECT_EQ(j["variants"]["as_trained"]["metrics"]["x"], 1);
  ASSERT_EQ(outs.size(), 2u);
  EXPECT_GT(j["variants"]["attached"]["metrics"]["max_abs_diff"].get<double>(), 0.0);
  EXPECT_GT(j["variants"]["merged"]["metrics"]["max_abs_diff"].get<double>(), 0.0);
  EXPECT_EQ(j["variants"]["merged"]["adapter_parameters"], 0);
  EXPECT_EQ(j["variants"]["attached"]["adapter_parameters"], 10 * 4 * (64 + 172));
  EXPECT_TRUE(at::equal(t.student->forward(ids), y0));
}

TEST(Deploy, PlansItCannotStoreAreRefused) {
  LIFELINE_REQUIRE_STORIES260K();
  Trained t = MakeTrained();
  auto message = [&](const QuantPlan& p) -> std::string {
    try {
      ExportDeployed(t.student, p, DeployVariant::kAttached, t.grid);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  };
  // INT4 g128 does not divide stories260K's 64-wide inputs.
  EXPECT_NE(message(ResolveDeployPlan("w4w2-gateup", t.student->arch())).find("does not divide"), std::string::npos);
  // The plan stores gate/up as INT4 while the run trained them on INT2.
  const std::string m = message(Plan("rules:\n  - {pattern: \"*\", bits: 4, group_size: 4}\n"));
  EXPECT_NE(m.find("trained it on INT2 g32 asym"), std::string::npos) << m;
  // A rule matching no linear.
  EXPECT_NE(message(Plan("rules:\n  - {pattern: \"*gate_proj\", bits: 2, group_size: 32}\n"
                         "  - {pattern: \"*.self_attn.*\", bits: 4, group_size: 32}\n"))
                .find("matches no linear"),
            std::string::npos);
  // A KV cache the float32 evaluation does not emulate: int8, int4 and fp8 are refused, naming the key.
  for (const char* kv : {"int8", "int4", "fp8"}) {
    const auto file = std::filesystem::temp_directory_path() / (std::string("lifeline_deploy_kv_") + kv + ".yaml");
    std::ofstream(file) << "name: p\nkv_cache_dtype: " << kv
                        << "\nrules:\n  - {pattern: \"*\", bits: 4, group_size: 32}\n";
    const std::string kv_message = ErrorOf([&] { ResolveDeployPlan(file.string(), t.student->arch()); });
    EXPECT_NE(kv_message.find("kv_cache_dtype"), std::string::npos) << kv << ": " << kv_message;
    EXPECT_NE(kv_message.find("does not emulate"), std::string::npos) << kv << ": " << kv_message;
    std::filesystem::remove(file);
  }
  EXPECT_THROW(ResolveDeployPlan("gguf-w4", t.student->arch()), ConfigError);
  EXPECT_THROW(ResolveDeployPlan("no-such-plan", t.student->arch()), ConfigError);
}

}  // namespace
}  // namespace lifeline::recovery
