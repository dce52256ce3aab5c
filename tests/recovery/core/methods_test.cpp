// Recovery methods: which tensors each trains, its loss, and the STE grid.
#include <set>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "common/error.hpp"
#include "recovery/lora/lora_linear.hpp"
#include "recovery/quant/rtn.hpp"
#include "recovery/train/distill.hpp"
#include "recovery/train/methods.hpp"
#include "tests/recovery/core/tiny_model.hpp"

namespace lifeline::recovery {
namespace {

using test::TinyArch;
using Pair = test::TinyPair;

// A random teacher and its INT2 gate/up student (no adapters yet).
Pair MakePair(uint64_t seed) { return test::MakeTinyPair(seed, 0); }

std::vector<std::vector<int64_t>> RandomData(int64_t n, int64_t len) { return test::RandomTokens(n, len, false); }

DistillConfig OneStep() {
  DistillConfig c;
  c.steps = 1;
  c.batch = 2;
  c.seq_len = 16;
  c.lr = 1e-2;
  c.warmup_steps = 0;
  c.progress = 0;
  return c;
}

std::map<std::string, at::Tensor> Params(const Decoder& m) {
  std::map<std::string, at::Tensor> s;
  for (const auto& item : m->named_parameters()) s[item.key()] = item.value().detach().clone();
  return s;
}

TEST(Methods, LlmQatUpdatesEveryParameterAndRecoverLoraOnlyAdapters) {
  const auto data = RandomData(4, 16);
  Pair q = MakePair(1);
  const auto before = Params(q.student);
  const NamedTensors all = AllParameters(q.student);
  Train(q.teacher, q.student, all, data, OneStep());
  const auto after = Params(q.student);
  ASSERT_EQ(before.size(), after.size());
  for (const auto& [name, t] : before) EXPECT_FALSE(at::equal(t, after.at(name))) << name << " not updated";

  Pair l = MakePair(1);
  LoraConfig cfg;
  cfg.rank = 4;
  cfg.alpha = 8;
  AttachLora(l.student, cfg);
  const auto lb = Params(l.student);
  Train(l.teacher, l.student, LoraParameters(l.student), data, OneStep());
  const auto la = Params(l.student);
  int changed = 0;
  for (const auto& [name, t] : lb) {
    const bool adapter = name.find("lora_") != std::string::npos;
    // B starts at zero and moves; A's gradient is zero on the first step (B = 0).
    if (!adapter) EXPECT_TRUE(at::equal(t, la.at(name))) << name << " changed";
    if (adapter && !at::equal(t, la.at(name))) ++changed;
  }
  EXPECT_GT(changed, 0);
  EXPECT_EQ(MethodLoss(RecoveryMethod::kSftLora), TrainLoss::kCrossEntropy);
  EXPECT_EQ(MethodLoss(RecoveryMethod::kLlmQat), TrainLoss::kKl);
  EXPECT_FALSE(UsesAdapters(RecoveryMethod::kLlmQat));
}

TEST(Methods, SftLossIsNextTokenCrossEntropyByDefinition) {
  at::manual_seed(3);
  const at::Tensor logits = at::randn({2, 5, 7});
  const at::Tensor ids = at::randint(0, 7, {2, 5}, at::kLong);
  at::Tensor mask = at::ones({2, 5});
  mask[1][3] = 0;
  mask[1][4] = 0;  // second row has 3 real tokens
  double sum = 0;
  int n = 0;
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t + 1 < 5; ++t) {
      if (mask[b][t + 1].item<float>() == 0) continue;
      const at::Tensor lp = at::log_softmax(logits[b][t], -1);
      sum += -lp[ids[b][t + 1].item<int64_t>()].item<double>();
      ++n;
    }
  }
  EXPECT_EQ(n, 6);
  EXPECT_NEAR(NextTokenCrossEntropy(logits, ids, mask).item<double>(), sum / n, 1e-6);
  // The trainer's first loss with TrainLoss::kCrossEntropy is that quantity on its batch.
  Pair p = MakePair(4);
  LoraConfig cfg;
  cfg.rank = 4;
  AttachLora(p.student, cfg);
  const auto data = RandomData(1, 12);  // one sequence: every batch row is it
  at::Tensor seq = at::tensor(data[0], at::kLong).unsqueeze(0);
  double expected;
  {
    torch::NoGradGuard g;
    expected = NextTokenCrossEntropy(p.student->forward(seq), seq, at::Tensor()).item<double>();
  }
  DistillConfig c = OneStep();
  c.batch = 1;
  c.loss = TrainLoss::kCrossEntropy;
  const DistillResult r = Train(p.teacher, p.student, LoraParameters(p.student), data, c);
  EXPECT_NEAR(r.first_loss, expected, 1e-5);
}

TEST(Methods, SteKeepsQuantizedWeightsOnTheGrid) {
  Pair p = MakePair(5);
  const QuantConfig q{2, 32, QuantScheme::kAsymmetric};
  const auto wrapped = AttachSteQuant(p.student, {"mlp.gate_proj", "mlp.up_proj"}, q, "--layers");
  ASSERT_EQ(wrapped.size(), 4u);
  // Same parameter names as before wrapping.
  std::set<std::string> names;
  for (const auto& item : p.student->named_parameters()) names.insert(item.key());
  EXPECT_TRUE(names.count("model.layers.0.mlp.gate_proj.weight"));
  const auto before = Params(p.student);
  DistillConfig c = OneStep();
  c.steps = 3;
  c.lr = 5e-2;
  Train(p.teacher, p.student, AllParameters(p.student), RandomData(4, 16), c);
  const auto latent = Params(p.student);
  const std::string g0 = "model.layers.0.mlp.gate_proj.weight";
  EXPECT_FALSE(at::equal(before.at(g0), latent.at(g0)));  // the latent weights trained through the STE
  // Forward uses exactly Q(latent): same logits as the baked model.
  const at::Tensor ids = at::randint(0, 40, {2, 10}, at::kLong);
  at::Tensor y_ste, y_baked;
  {
    torch::NoGradGuard g;
    y_ste = p.student->forward(ids);
    BakeSteQuant(p.student);
    y_baked = p.student->forward(ids);
  }
  EXPECT_TRUE(at::allclose(y_ste, y_baked, 0, 0));
  // Every baked weight is (code - zero) * scale of its own group: at most
  // 2^bits distinct values per group of 32, each an integer code.
  for (const auto& [name, lin] : p.student->SelectLinears({"mlp.gate_proj", "mlp.up_proj"}, "test")) {
    const at::Tensor w = lin->BaseWeight().detach();
    EXPECT_TRUE(at::equal(w, FakeQuantize(latent.at(name + ".weight"), q))) << name;
    const GroupQuantized gq = QuantizeRtn(latent.at(name + ".weight"), q);
    const at::Tensor codes = w.reshape({w.size(0), -1, 32}) / gq.scale.unsqueeze(-1) +
                             gq.zero.to(at::kFloat).unsqueeze(-1);
    EXPECT_TRUE(at::allclose(codes, at::round(codes), 0, 1e-4)) << name;
    EXPECT_LE(codes.max().item<float>(), 3.0f + 1e-4f);
    EXPECT_GE(codes.min().item<float>(), -1e-4f);
  }
}

TEST(Methods, UnknownMethodIsAConfigError) {
  EXPECT_EQ(ParseRecoveryMethod("llm-qat", "--method"), RecoveryMethod::kLlmQat);
  try {
    ParseRecoveryMethod("qlora", "--method");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("--method"), std::string::npos) << msg;
    EXPECT_NE(msg.find("recover-lora, llm-qat, sft-lora"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace lifeline::recovery
