#include <fstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "recovery/data/synthetic.hpp"
#include "common/error.hpp"
#include "test_util.hpp"

namespace lifeline::recovery {
namespace {

TEST(Synthetic, HybridSamplingIsSeededAndGreedyAtTheStart) {
  LIFELINE_REQUIRE_STORIES260K();
  Decoder teacher = BuildDecoder(LoadLlama2cCheckpoint(Stories260kModelPath()));
  SyntheticConfig cfg;
  cfg.samples = 10;
  cfg.max_len = 48;
  cfg.batch = 4;
  cfg.seed = 7;
  const SpecialIds special{1, 2};
  int64_t calls = 0;
  const auto a = GenerateSynthetic(teacher, cfg, special, [&](int64_t done, int64_t total) {
    ++calls;
    EXPECT_EQ(total, 10);
  });
  EXPECT_EQ(calls, 3);
  const auto b = GenerateSynthetic(teacher, cfg, special);
  EXPECT_EQ(a, b);  // same seed, same data
  cfg.seed = 8;
  EXPECT_NE(GenerateSynthetic(teacher, cfg, special), a);
  ASSERT_EQ(a.size(), 10u);
  torch::NoGradGuard g;
  std::set<int64_t> firsts;
  for (const auto& s : a) {
    ASSERT_GE(s.size(), 4u);
    EXPECT_LE(s.size(), 48u);
    EXPECT_EQ(s[0], 1);
    EXPECT_NE(s[1], 1);
    EXPECT_NE(s[1], 2);
    firsts.insert(s[1]);
    // Tokens 2 and 3 (at least two greedy steps) are the teacher's argmax.
    const at::Tensor logits = teacher->forward(at::tensor(s, at::kLong).unsqueeze(0))[0];
    EXPECT_EQ(logits[1].argmax().item<int64_t>(), s[2]);
    EXPECT_EQ(logits[2].argmax().item<int64_t>(), s[3]);
    // Stop tokens only at the end.
    for (size_t i = 2; i + 1 < s.size(); ++i) EXPECT_TRUE(s[i] != 1 && s[i] != 2);
  }
  EXPECT_GE(firsts.size(), 5u);  // random first tokens
  cfg.walk_vocab = true;
  const auto w = GenerateSynthetic(teacher, cfg, special);
  EXPECT_EQ(w[0][1], 0);
  EXPECT_EQ(w[1][1], 3);  // 1 and 2 (BOS/EOS) skipped
  EXPECT_EQ(w[2][1], 4);
  cfg.temperature = 0;
  EXPECT_THROW(GenerateSynthetic(teacher, cfg, special), ConfigError);
}

TEST(Synthetic, SaveLoadRoundTripAndValidation) {
  const std::vector<std::vector<int64_t>> seqs = {{1, 5, 6, 7}, {1, 9}, {1, 300, 2}};
  const auto path = std::filesystem::temp_directory_path() / "lifeline_synth_test.bin";
  SaveSequences(path, seqs, 512, 42);
  EXPECT_EQ(LoadSequences(path, 512), seqs);
  EXPECT_THROW(LoadSequences(path, 32000), ConfigError);  // vocabulary mismatch
  // Truncate: lengths no longer match the size.
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 4);
  EXPECT_THROW(LoadSequences(path), ConfigError);
  {
    std::ofstream(path, std::ios::binary) << "NOTSYNTHxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
  }
  EXPECT_THROW(LoadSequences(path), ConfigError);
  SaveSequences(path, {{1, 600}}, 512, 0);  // token out of range
  EXPECT_THROW(LoadSequences(path), ConfigError);
  EXPECT_THROW(LoadSequences("/nonexistent/x.bin"), ConfigError);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace lifeline::recovery
