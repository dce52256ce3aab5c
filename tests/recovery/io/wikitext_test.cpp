#include "recovery/eval/wikitext.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include <ATen/ATen.h>

#include "recovery/eval/text_metrics.hpp"
#include "tests/recovery/io/fakes.hpp"
#include "tests/recovery/io/test_util.hpp"

namespace lifeline::recovery {
namespace {

std::filesystem::path DataDir() { return DefaultSharedDir() / "data"; }

// A hand-made WikiText document exercising every detokenizer rule; the
// expected text was checked by hand rule by rule and against the harness's
// wikitext_detokenizer run in Python.
const char* kDoc =
    " = Valkyria = \n \n The game 's score was 1 @,@ 234 ( about 5 @.@ 5 % ) , \" very good \" . \n"
    " It was 40 \xC2\xB0 C ; N players ' [ won ] . \n";

TEST(Wikitext, DetokenizerFollowsTheHarness) {
  EXPECT_EQ(WikitextDetokenize(kDoc),
            " = Valkyria =\n\nThe game's score was 1,234 (about 5.5 %), \"very good\".\n"
            "It was 40\xC2\xB0" "C; 1 players' [won].\n");
  EXPECT_EQ(WikitextDetokenize("a @-@ b = = c = = { x } /' 3/"), "a-b == c == {x} /'[0-9]/");
}

TEST(Wikitext, WordsAndBytesAreCountedOnTheRawDocument) {
  // re.split(r"\s+", doc): 37 words, and the leading and trailing whitespace
  // runs each add an empty piece -> 39; 129 characters, the degree sign is 2
  // bytes -> 130 bytes.
  EXPECT_EQ(WikitextWordCount(kDoc), 39);
  EXPECT_EQ(std::string(kDoc).size(), 130u);
  EXPECT_EQ(WikitextWordCount("a b"), 2);
  EXPECT_EQ(WikitextWordCount(" a  b \n"), 4);
  EXPECT_EQ(WikitextWordCount(""), 1);
  EXPECT_EQ(WikitextWordCount("a\xC2\xA0" "b"), 2);  // U+00A0 is whitespace to Python
}

TEST(Wikitext, DocumentsStartAtTopLevelHeadings) {
  const auto docs = SplitWikitextDocuments(" = A = \n x \n = = B = = \n y \n = C = \n z \n");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0], " = A = \n x \n = = B = = \n y ");
  EXPECT_EQ(docs[1], " = C = \n z \n");
}

TEST(Wikitext, RollingWindowsPredictEachTokenOnce) {
  const std::vector<int64_t> t = {10, 11, 12, 13, 14, 15, 16};
  const auto w = RollingWindows(t, 1, 3);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].first, (std::vector<int64_t>{1}));
  EXPECT_EQ(w[0].second, (std::vector<int64_t>{10, 11, 12}));
  EXPECT_EQ(w[1].first, (std::vector<int64_t>{12}));
  EXPECT_EQ(w[1].second, (std::vector<int64_t>{13, 14, 15}));
  EXPECT_EQ(w[2].first, (std::vector<int64_t>{13, 14, 15}));
  EXPECT_EQ(w[2].second, (std::vector<int64_t>{16}));
  EXPECT_TRUE(RollingWindows({}, 1, 3).empty());
}

TEST(Wikitext, PerplexitiesFromAUniformModelByHand) {
  // A uniform model over 256 byte tokens: every token scores -ln 256. "ab cd"
  // is 5 tokens, 2 words, 5 bytes: ll = -5 ln 256, word perplexity =
  // 256^(5/2), byte perplexity = 256, bits per byte = 8.
  testing::ByteTokenizer tok;
  const LogitsFn uniform = [](const at::Tensor& ids) { return at::zeros({ids.size(0), ids.size(1), 256}); };
  LoglikelihoodOptions opt;
  opt.max_length = 2;  // three windows
  const TaskResult r = ScoreWikitext({"ab cd"}, tok, uniform, opt);
  EXPECT_EQ(r.items, 1);
  // Log-probabilities come from float32 logits: agreement to ~1e-7 relative.
  EXPECT_NEAR(r.metrics.at("word_perplexity"), std::pow(256.0, 2.5), 1e-6 * std::pow(256.0, 2.5));
  EXPECT_NEAR(r.metrics.at("byte_perplexity"), 256.0, 1e-6 * 256);
  EXPECT_NEAR(r.metrics.at("bits_per_byte"), 8.0, 1e-6 * 8);
  EXPECT_NEAR(r.metrics.at("token_perplexity"), 256.0, 1e-6 * 256);
  EXPECT_EQ(r.sizes.at("words"), 2);
  EXPECT_EQ(r.sizes.at("bytes"), 5);
  EXPECT_EQ(r.sizes.at("tokens"), 5);
}

TEST(Wikitext, TestSplitHasTheDatasetsDocuments) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "wikitext2");
  const auto docs = LoadWikitext(DataDir());
  // The dataset script run in Python on the same file: 62 documents, 241,335
  // words and 1,287,595 bytes in all; the first is Robert Boulter's article.
  ASSERT_EQ(docs.size(), 62u);
  int64_t words = 0, bytes = 0;
  for (const auto& d : docs) {
    words += WikitextWordCount(d);
    bytes += static_cast<int64_t>(d.size());
    EXPECT_EQ(d.find('\r'), std::string::npos);
  }
  EXPECT_EQ(words, 241335);
  EXPECT_EQ(bytes, 1287595);
  EXPECT_TRUE(docs[0].starts_with(" = Robert Boulter = \n Robert Boulter is an English film"));
  EXPECT_EQ(LoadWikitext(DataDir(), 3).size(), 3u);
}

}  // namespace
}  // namespace lifeline::recovery
