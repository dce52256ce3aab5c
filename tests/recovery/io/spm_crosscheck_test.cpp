// Checks lifeline's native sentencepiece reader against libsentencepiece on
// models libsentencepiece trains here. Built without LibTorch: the two cannot
// share a process (see recovery/tokenizer/sentencepiece_tokenizer.cpp).
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "recovery/tokenizer/tokenizer.hpp"

namespace lifeline::recovery {
namespace {

class SpmCrossCheck : public ::testing::TestWithParam<std::string> {
 protected:
  static std::filesystem::path Dir() {
    static const auto dir = [] {
      auto d = std::filesystem::temp_directory_path() / ("lifeline_spm_" + std::to_string(::getpid()));
      std::filesystem::create_directories(d);
      std::atexit([] {
        std::error_code ec;
        std::filesystem::remove_all(
            std::filesystem::temp_directory_path() / ("lifeline_spm_" + std::to_string(::getpid())), ec);
      });
      std::ofstream out(d / "corpus.txt");
      const char* lines[] = {
          "Once upon a time there was a little girl named Lily.",
          "She liked to play outside with her dog, Max, in the big green park.",
          "One day, Lily found a shiny red ball under a tree and laughed.",
          "Tom said: \"Can I play too?\" and Lily said yes, because sharing is fun!",
          "They played until the sun went down at 7 o'clock, then went home happy.",
      };
      for (int i = 0; i < 60; ++i)
        for (const char* l : lines) out << l << " " << i << "\n";
      return d;
    }();
    return dir;
  }
};

TEST_P(SpmCrossCheck, EncodeAndDecodeMatchLibsentencepiece) {
  const std::string type = GetParam();
  const auto prefix = Dir() / ("m_" + type);
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + (Dir() / "corpus.txt").string() + " --model_prefix=" + prefix.string() +
      " --model_type=" + type.substr(0, type.find('_')) +
      " --vocab_size=" + std::string(type.ends_with("_fb") ? "400" : "120") +
      " --minloglevel=2 --hard_vocab_limit=false --bos_id=1 --eos_id=2 "
      "--unk_id=0" + (type.ends_with("_fb") ? " --byte_fallback=true" : ""));
  ASSERT_TRUE(status.ok()) << status.ToString();
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(prefix.string() + ".model").ok());
  auto ours = LoadTokenizer(prefix.string() + ".model");
  EXPECT_EQ(ours->VocabSize(), sp.GetPieceSize());
  EXPECT_EQ(ours->BosId(), sp.bos_id());
  EXPECT_EQ(ours->EosId(), sp.eos_id());
  for (const std::string text :
       {"Once upon a time, Lily played.", "  extra   spaces  here ", "Max found 42 red balls!",
        "unseen words: zebra quokka xylophone", "a", "", "Tom said: \"yes\"", "naïve café ✓",
        "line one\nline two\ttab\r\n"}) {
    std::vector<int> ref;
    ASSERT_TRUE(sp.Encode(text, &ref).ok());
    const std::vector<int64_t> want(ref.begin(), ref.end());
    EXPECT_EQ(ours->Encode(text, false), want) << type << ": '" << text << "'";
    std::string decoded;
    ASSERT_TRUE(sp.Decode(ref, &decoded).ok());
    EXPECT_EQ(ours->Decode(want), decoded) << type << ": '" << text << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, SpmCrossCheck,
                         ::testing::Values("bpe", "unigram", "bpe_fb", "unigram_fb"));

}  // namespace
}  // namespace lifeline::recovery
