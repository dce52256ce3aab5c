#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <torch/types.h>

#include "common/error.hpp"
#include "recovery/lora/init.hpp"
#include "recovery/lora/lora_linear.hpp"
#include "recovery/quant/rtn.hpp"
#include "test_util.hpp"

namespace lifeline::recovery {
namespace {

Decoder Stories() { return BuildDecoder(LoadLlama2cCheckpoint(Stories260kModelPath())); }

const std::vector<std::string> kGateUp = {"mlp.gate_proj", "mlp.up_proj"};

// Every value of `w` is one of its group's levels (k − zero)·scale, k in
// 0..2^b − 1, computed here in double from the codes' scale and zero alone.
void ExpectOnLevels(const at::Tensor& w, const GroupQuantized& q, const QuantConfig& cfg, const std::string& name) {
  const int64_t out = w.size(0), in = w.size(1), ng = in / cfg.group, levels = int64_t{1} << cfg.bits;
  const at::Tensor k = at::arange(levels, at::kDouble);                                     // (L)
  const at::Tensor lv = (k.view({1, 1, levels}) - q.zero.to(at::kDouble).unsqueeze(-1)) *  // (out, ng, L)
                        q.scale.to(at::kDouble).unsqueeze(-1);
  const at::Tensor wg = w.to(at::kCPU).to(at::kDouble).reshape({out, ng, cfg.group, 1});   // (out, ng, g, 1)
  const at::Tensor dist = std::get<0>((wg - lv.unsqueeze(2)).abs().min(-1));               // (out, ng, g)
  EXPECT_EQ(dist.max().item<double>(), 0.0) << name << ": a value lies off its group's levels";
  EXPECT_TRUE(OnGrid(w, q, cfg)) << name;
}

struct InitCase {
  Decoder teacher = Stories();
  Decoder student = Stories();
  std::vector<std::string> quantized;
};

InitCase Quantized(const QuantConfig& q, const LoraConfig& lcfg) {
  InitCase s;
  for (const auto& l : FakeQuantizeLayers(s.student, kGateUp, q)) s.quantized.push_back(l.name);
  AttachLora(s.student, lcfg);
  return s;
}

TEST(LoraInit, OloraAndLoftqKeepTheFrozenBaseOnTheGrid) {
  LIFELINE_REQUIRE_STORIES260K();
  for (QuantScheme scheme : {QuantScheme::kAsymmetric, QuantScheme::kSymmetric}) {
    for (LoraInit init : {LoraInit::kOlora, LoraInit::kLoftq}) {
      SCOPED_TRACE(LoraInitName(init) + " " + QuantSchemeName(scheme));
      const QuantConfig q{2, 32, scheme};
      LoraConfig lcfg;
      lcfg.rank = 8;
      lcfg.alpha = 16;
      InitCase s = Quantized(q, lcfg);
      BaseGrid grid;
      const auto reports = InitializeAdapters(s.student, s.teacher, init, &q, s.quantized, 3, &grid);
      ASSERT_EQ(reports.size(), 10u);
      ASSERT_EQ(grid.codes.size(), 10u);
      for (const auto& [name, l] : LoraLayers(s.student)) {
        ExpectOnLevels(l->base()->BaseWeight(), grid.codes.at(name), q, name);
        EXPECT_GT(l->lora_B().abs().max().item<double>(), 0.0) << name;
      }
      // The init moved the base off the RTN weight (the residual was re-quantized).
      EXPECT_GT(reports[0].base_change_rel, 0.0);
    }
  }
}

TEST(LoraInit, LoftqErrorFallsOverIterationsAndBeatsRtn) {
  LIFELINE_REQUIRE_STORIES260K();
  const Decoder teacher = Stories();
  const QuantConfig q{2, 32, QuantScheme::kAsymmetric};
  for (const auto& [name, lin] : teacher->SelectLinears(kGateUp, "test")) {
    const at::Tensor w = lin->BaseWeight().detach().clone();
    const double rtn_error = (w - FakeQuantize(w, q)).norm().item<double>();
    const AdapterInit ai = LoftqInit(w, q, /*rank=*/8, /*scaling=*/2.0, /*iters=*/5, name);
    ASSERT_EQ(ai.loftq_error_per_iter.size(), 5u);
    // RTN recomputes each group's scale and zero point, so it is not the
    // nearest point of a fixed grid and one iteration may end slightly above
    // the previous one (stories260K: up to 0.2%); none ends above the first.
    for (size_t t = 1; t < ai.loftq_error_per_iter.size(); ++t)
      EXPECT_LE(ai.loftq_error_per_iter[t], ai.loftq_error_per_iter.front()) << name << " iter " << t;
    EXPECT_LT(ai.loftq_error_per_iter.back(), ai.loftq_error_per_iter.front()) << name;
    EXPECT_LT(ai.loftq_error_per_iter.front(), rtn_error) << name;
    // The kept iterate is the one with the lowest ||W − (Q + s·B·A)||, as reported.
    const auto best = std::min_element(ai.loftq_error_per_iter.begin(), ai.loftq_error_per_iter.end());
    EXPECT_EQ(ai.loftq_kept_iter, static_cast<int>(best - ai.loftq_error_per_iter.begin()) + 1) << name;
    const double direct = (w - ai.base - at::matmul(ai.lora_B, ai.lora_A) * 2.0).norm().item<double>();
    EXPECT_NEAR(direct, *best, 1e-4 * direct) << name;
    ExpectOnLevels(ai.base, ai.codes, q, name);
  }
}

// At rank 32 on stories260K's 64-wide gate/up the iteration rises after the
// first step (the quick ablation's loftq cell: 2.52 -> 2.75): the first
// iterate is kept, not the last.
TEST(LoraInit, LoftqKeepsItsBestIterateWhenTheErrorRises) {
  LIFELINE_REQUIRE_STORIES260K();
  const Decoder teacher = Stories();
  const QuantConfig q{2, 32, QuantScheme::kAsymmetric};
  bool rose = false;
  for (const auto& [name, lin] : teacher->SelectLinears(kGateUp, "test")) {
    const at::Tensor w = lin->BaseWeight().detach().clone();
    const AdapterInit ai = LoftqInit(w, q, /*rank=*/32, /*scaling=*/2.0, /*iters=*/5, name);
    const auto best = std::min_element(ai.loftq_error_per_iter.begin(), ai.loftq_error_per_iter.end());
    rose = rose || ai.loftq_error_per_iter.back() > *best;
    EXPECT_EQ(ai.loftq_kept_iter, static_cast<int>(best - ai.loftq_error_per_iter.begin()) + 1) << name;
    const double direct = (w - ai.base - at::matmul(ai.lora_B, ai.lora_A) * 2.0).norm().item<double>();
    EXPECT_NEAR(direct, *best, 1e-4 * direct) << name;
    ExpectOnLevels(ai.base, ai.codes, q, name);
  }
  EXPECT_TRUE(rose) << "no layer's error rose: the case this test is for did not occur";
}

TEST(LoraInit, StandardInitLeavesTheDegradedModelExactly) {
  LIFELINE_REQUIRE_STORIES260K();
  const QuantConfig q{2, 32, QuantScheme::kAsymmetric};
  Decoder degraded = Stories();
  FakeQuantizeLayers(degraded, kGateUp, q);
  LoraConfig lcfg;
  lcfg.rank = 8;
  InitCase s = Quantized(q, lcfg);
  BaseGrid grid;
  InitializeAdapters(s.student, s.teacher, LoraInit::kStandard, &q, s.quantized, 5, &grid);
  const at::Tensor ids = at::randint(3, 512, {2, 16}, at::kLong);
  torch::NoGradGuard g;
  EXPECT_TRUE(at::equal(s.student->forward(ids), degraded->forward(ids)));
  // The frozen bases are the RTN codes of the full-precision weights.
  ASSERT_EQ(grid.codes.size(), 10u);
  for (const auto& [name, l] : LoraLayers(s.student)) ExpectOnLevels(l->base()->BaseWeight(), grid.codes.at(name), q, name);
}

TEST(LoraInit, SvdAndUngriddableInitsAreRefused) {
  LIFELINE_REQUIRE_STORIES260K();
  try {
    ParseLoraInit("svd", "--init");
    FAIL() << "svd accepted";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("no longer"), std::string::npos) << m;
    EXPECT_NE(m.find("olora"), std::string::npos) << m;
    EXPECT_NE(m.find("loftq"), std::string::npos) << m;
  }
  EXPECT_EQ(ParseLoraInit("loftq", "--init"), LoraInit::kLoftq);
  const QuantConfig q{2, 32, QuantScheme::kAsymmetric};
  LoraConfig lcfg;
  lcfg.rank = 4;
  {
    // No quantizer (the degradation is not a quantization): no grid to keep.
    InitCase s = Quantized(q, lcfg);
    EXPECT_THROW(InitializeAdapters(s.student, s.teacher, LoraInit::kOlora, nullptr, s.quantized, 5, nullptr),
                 ConfigError);
  }
  {
    // Adapters on a layer that was not quantized.
    lcfg.targets = {"self_attn.q_proj"};
    InitCase s = Quantized(q, lcfg);
    try {
      InitializeAdapters(s.student, s.teacher, LoraInit::kLoftq, &q, s.quantized, 5, nullptr);
      FAIL() << "loftq on an unquantized layer accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.q_proj"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace lifeline::recovery
