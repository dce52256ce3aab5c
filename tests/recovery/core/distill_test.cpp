#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include "recovery/lora/lora_linear.hpp"
#include "recovery/quant/rtn.hpp"
#include "recovery/train/distill.hpp"
#include "common/error.hpp"
#include "tests/recovery/core/tiny_model.hpp"

namespace lifeline::recovery {
namespace {

using test::TinyArch;
using Pair = test::TinyPair;

// A random teacher and a student with INT2 gate/up plus LoRA r=8.
Pair MakePair(uint64_t seed) { return test::MakeTinyPair(seed, 8); }

std::vector<std::vector<int64_t>> RandomData(int64_t n, int64_t len) { return test::RandomTokens(n, len, true); }

TEST(Distill, KlMatchesDefinitionAndMask) {
  const at::Tensor t = at::randn({2, 3, 7}), s = at::randn({2, 3, 7});
  double ref = 0;
  for (int b = 0; b < 2; ++b) {
    for (int i = 0; i < 2; ++i) {  // mask keeps positions 0 and 1
      const at::Tensor pt = at::softmax(t[b][i], -1), ps = at::softmax(s[b][i], -1);
      ref += (pt * (pt.log() - ps.log())).sum().item<double>();
    }
  }
  ref /= 4;
  const at::Tensor mask = at::tensor({1.f, 1.f, 0.f, 1.f, 1.f, 0.f}).view({2, 3});
  EXPECT_NEAR(KlDivergence(t, s, mask).item<double>(), ref, 1e-5);
  EXPECT_NEAR(KlDivergence(t, t, at::Tensor()).item<double>(), 0.0, 1e-6);
}

TEST(Distill, ScheduleAndBatching) {
  DistillConfig c;
  c.steps = 100;
  c.lr = 1.0;
  c.warmup_steps = 10;
  c.schedule = LrSchedule::kLinear;
  EXPECT_DOUBLE_EQ(LearningRate(c, 0), 0.1);
  EXPECT_DOUBLE_EQ(LearningRate(c, 9), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(c, 10), 1.0);
  EXPECT_NEAR(LearningRate(c, 55), 0.5, 1e-12);
  c.schedule = LrSchedule::kCosine;
  EXPECT_NEAR(LearningRate(c, 55), 0.5, 1e-12);
  EXPECT_NEAR(LearningRate(c, 99), 0.5 * (1 + std::cos(M_PI * 89.0 / 90.0)), 1e-12);
  const std::vector<std::vector<int64_t>> data = {{1, 2, 3, 4, 5}, {6, 7}};
  auto [ids, mask] = MakeBatch(data, {1, 0}, 4, at::kCPU);
  EXPECT_EQ(ids.sizes(), (std::vector<int64_t>{2, 4}));
  EXPECT_TRUE(at::equal(ids, at::tensor({6, 7, 0, 0, 1, 2, 3, 4}, at::kLong).view({2, 4})));
  EXPECT_EQ(mask.sum().item<float>(), 6.0f);
  EXPECT_THROW(ParseLrSchedule("step", "--schedule"), ConfigError);
  EXPECT_EQ(ParseDevice("cpu"), at::Device(at::kCPU));
  EXPECT_THROW(ParseDevice("tpu"), ConfigError);
  if (!torch::cuda::is_available()) {
    EXPECT_THROW(ParseDevice("cuda"), ConfigError);
  }
}

TEST(Distill, TrainingReducesKlAndOnlyTouchesAdapters) {
  Pair p = MakePair(1);
  const auto data = RandomData(32, 24);
  std::map<std::string, at::Tensor> frozen;
  for (const auto& item : p.student->named_parameters()) {
    if (item.key().find("lora_") == std::string::npos) frozen[item.key()] = item.value().clone();
  }
  DistillConfig c;
  c.steps = 60;
  c.batch = 4;
  c.seq_len = 24;
  c.lr = 1e-2;
  c.warmup_steps = 5;
  c.progress = 0;
  const DistillResult r = Distill(p.teacher, p.student, data, c);
  EXPECT_FALSE(r.diverged);
  EXPECT_EQ(r.steps_done, 60);
  EXPECT_EQ(r.losses.size(), 60u);
  EXPECT_GT(r.tokens, 0);
  std::cout << "tiny distill KL " << r.first_loss << " -> " << r.final_loss << "\n";
  EXPECT_LT(r.final_loss, 0.7 * r.first_loss);
  for (const auto& item : p.student->named_parameters()) {
    if (frozen.count(item.key())) {
      EXPECT_TRUE(at::equal(item.value(), frozen.at(item.key()))) << item.key();
    }
  }
  // No adapters -> clear error.
  Decoder plain(TinyArch(), false);
  EXPECT_THROW(Distill(p.teacher, plain, data, c), ConfigError);
  EXPECT_THROW(Distill(p.teacher, p.student, {}, c), ConfigError);
}

TEST(Distill, DivergenceStopsAndRestoresGoodAdapters) {
  Pair p = MakePair(2);
  const auto data = RandomData(16, 16);
  DistillConfig c;
  c.steps = 50;
  c.batch = 4;
  c.seq_len = 16;
  c.lr = 1e4;  // absurd: the loss blows up
  c.warmup_steps = 0;
  c.clip_norm = 0;
  c.snapshot_every = 1;
  c.divergence_factor = 3;
  c.progress = 0;
  const auto before = SnapshotLora(p.student);
  const DistillResult r = Distill(p.teacher, p.student, data, c);
  ASSERT_TRUE(r.diverged);
  std::cout << "divergence: " << r.divergence_reason << "\n";
  EXPECT_FALSE(r.divergence_reason.empty());
  EXPECT_LT(r.steps_done, 50);
  EXPECT_GE(r.restored_step, 0);
  // The adapters left in the model give a finite loss.
  torch::NoGradGuard g;
  auto [ids, mask] = MakeBatch(data, {0, 1, 2, 3}, 16, at::kCPU);
  const double kl = KlDivergence(p.teacher->forward(ids), p.student->forward(ids), mask).item<double>();
  EXPECT_TRUE(std::isfinite(kl));
  // They are the snapshot taken at the restored step, not the blown-up ones.
  const auto after = SnapshotLora(p.student);
  bool changed = false;
  for (const auto& [k, v] : after) changed = changed || !at::equal(v, before.at(k));
  EXPECT_EQ(changed, r.restored_step > 0);
}

TEST(Distill, CheckpointResumeEqualsStraightRun) {
  const auto data = RandomData(16, 16);
  DistillConfig c;
  c.steps = 12;
  c.batch = 2;
  c.seq_len = 16;
  c.lr = 5e-3;
  c.warmup_steps = 2;
  c.progress = 0;
  Pair s = MakePair(3);
  Distill(s.teacher, s.student, data, c);  // straight through

  const auto dir = std::filesystem::temp_directory_path() / "lifeline_distill_resume";
  std::filesystem::remove_all(dir);
  Pair b = MakePair(3);
  DistillConfig first = c;
  first.checkpoint_dir = dir;
  first.stop_after = 7;  // interrupted after 7 of 12 steps; saves its state
  EXPECT_EQ(Distill(b.teacher, b.student, data, first).steps_done, 7);
  Pair b2 = MakePair(3);  // a fresh process rebuilds the model
  DistillConfig second = c;
  second.checkpoint_dir = dir;
  second.resume = true;
  const DistillResult r = Distill(b2.teacher, b2.student, data, second);
  EXPECT_EQ(r.start_step, 7);
  EXPECT_EQ(r.steps_done, 12);
  EXPECT_EQ(r.losses.size(), 12u);
  const auto x = SnapshotLora(b2.student), y = SnapshotLora(s.student);
  double diff = 0;
  for (const auto& [k, v] : x) diff = std::max(diff, (v - y.at(k)).abs().max().item<double>());
  std::cout << "max adapter diff resume vs straight: " << diff << " (tolerance 1e-6)\n";
  EXPECT_LT(diff, 1e-6);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lifeline::recovery
