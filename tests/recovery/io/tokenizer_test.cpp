#include "recovery/tokenizer/tokenizer.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "recovery/eval/text_metrics.hpp"
#include "common/error.hpp"
#include "tests/recovery/io/test_util.hpp"

namespace lifeline::recovery {
namespace {

using testing::TempDir;
using testing::WriteFile;

std::filesystem::path Tok512() { return DefaultSharedDir() / "models" / "stories260k" / "tok512.bin"; }

// Ids from an independent Python port of llama2.c run.c's encode() (dummy
// prefix, UTF-8 characters with byte fallback, best-score pair merges) run on
// tok512.bin (sha256 037cb335...c312).
const std::vector<int64_t> kLilyIds = {1,   403, 407, 261, 378, 432, 383, 286,
                                       261, 376, 298, 315, 421, 395, 317, 426};
const std::vector<int64_t> kUnicodeIds = {1,   346, 306, 414, 432, 297, 412, 198, 178,
                                          360, 280, 412, 431, 485, 410, 475, 479, 472,
                                          443, 13,  458, 411, 424, 278, 271, 411};

// Naive reference: llama2.c run.c's encode() transcribed (full rescan per
// merge), on a vocabulary read here independently of the tokenizer.
std::vector<int64_t> RunCEncode(const std::filesystem::path& tok_bin, const std::string& text) {
  std::ifstream in(tok_bin, std::ios::binary);
  int32_t max_len = 0;
  in.read(reinterpret_cast<char*>(&max_len), 4);
  std::vector<std::string> vocab;
  std::vector<float> scores;
  float score;
  int32_t len;
  while (in.read(reinterpret_cast<char*>(&score), 4) && in.read(reinterpret_cast<char*>(&len), 4)) {
    std::string piece(static_cast<size_t>(len), '\0');
    in.read(piece.data(), len);
    vocab.push_back(piece);
    scores.push_back(score);
  }
  auto lookup = [&](const std::string& s) -> int64_t {
    for (size_t i = 0; i < vocab.size(); ++i)
      if (vocab[i] == s) return static_cast<int64_t>(i);
    return -1;
  };
  std::vector<int64_t> tokens = {1};
  if (!text.empty()) tokens.push_back(lookup(" "));
  std::string buf;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) buf.clear();
    buf.push_back(text[i]);
    if (i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80 &&
        buf.size() < 4)
      continue;
    const int64_t id = lookup(buf);
    if (id != -1) {
      tokens.push_back(id);
    } else {
      for (unsigned char c : buf) tokens.push_back(static_cast<int64_t>(c) + 3);
    }
    buf.clear();
  }
  while (true) {
    float best_score = -1e10f;
    int64_t best_id = -1, best_idx = -1;
    for (size_t i = 0; i + 1 < tokens.size(); ++i) {
      const int64_t id = lookup(vocab[static_cast<size_t>(tokens[i])] + vocab[static_cast<size_t>(tokens[i + 1])]);
      if (id != -1 && scores[static_cast<size_t>(id)] > best_score) {
        best_score = scores[static_cast<size_t>(id)];
        best_id = id;
        best_idx = static_cast<int64_t>(i);
      }
    }
    if (best_idx == -1) break;
    tokens[static_cast<size_t>(best_idx)] = best_id;
    tokens.erase(tokens.begin() + best_idx + 1);
  }
  return tokens;
}

// A 259 + 3 token llama2.c vocabulary built by the test: merges ab (score 2)
// and bc (score 5) compete for "abc"; the higher score wins.
void WriteTinyLlama2c(const std::filesystem::path& path) {
  std::vector<std::pair<float, std::string>> vocab = {{0, "<unk>"}, {0, "\n<s>\n"}, {0, "\n</s>\n"}};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    vocab.push_back({0, buf});
  }
  vocab.push_back({-1, " "});   // 259
  vocab.push_back({-2, "a"});   // 260
  vocab.push_back({-3, "b"});   // 261
  vocab.push_back({-4, "c"});   // 262
  vocab.push_back({2, "ab"});   // 263
  vocab.push_back({5, "bc"});   // 264
  vocab.push_back({7, " a"});   // 265
  vocab.push_back({1, " abc"}); // 266
  std::ofstream out(path, std::ios::binary);
  int32_t max_len = 8;
  out.write(reinterpret_cast<const char*>(&max_len), 4);
  for (const auto& [score, s] : vocab) {
    int32_t len = static_cast<int32_t>(s.size());
    out.write(reinterpret_cast<const char*>(&score), 4);
    out.write(reinterpret_cast<const char*>(&len), 4);
    out.write(s.data(), len);
  }
}

// GPT-2's byte-to-unicode map, written independently of the tokenizer.
std::string ByteChar(int b) {
  const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  int cp = b;
  if (!printable) {
    int n = 0;
    for (int k = 0; k < b; ++k)
      if (!((k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || k >= 0xAE)) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

// Byte tokens have id = byte value; merges follow in rank order from id 256.
std::filesystem::path WriteTinyHfTokenizer(const std::filesystem::path& dir, bool qwen_style) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteChar(b)] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"l", "l"}, {"o", "r"}, {"1", "2"}};
  nlohmann::json merge_list = nlohmann::json::array();
  int id = 256;
  for (const auto& [a, b] : merges) {
    vocab[a + b] = id++;
    merge_list.push_back(a + " " + b);
  }
  // id 262 is the added <|endoftext|>; one more merge gets 263: "a" + the
  // first byte of a UTF-8 em dash (0xE2 shows as "â"), which only applies if
  // the pre-tokenizer wrongly glues the dash to the word.
  vocab["a\u00e2"] = 263;
  merge_list.push_back("a \u00e2");
  nlohmann::json j;
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}};
  j["added_tokens"] = {{{"id", 262}, {"content", "<|endoftext|>"}, {"special", true}}};
  if (qwen_style) {
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern",
            {{"Regex",
              "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
              "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
           {"behavior", "Isolated"}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  } else {
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  }
  j["decoder"] = {{"type", "ByteLevel"}};
  const auto path = dir / (qwen_style ? "qwen" : "gpt2");
  std::filesystem::create_directories(path);
  WriteFile(path / "tokenizer.json", j.dump());
  return path / "tokenizer.json";
}

// Protobuf wire-format helpers to hand-build a sentencepiece ModelProto.
std::string Varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  s.push_back(static_cast<char>(v));
  return s;
}
std::string Field(int field, const std::string& bytes) {
  return Varint(static_cast<uint64_t>(field) << 3 | 2) + Varint(bytes.size()) + bytes;
}
std::string FieldVarint(int field, int64_t v) {
  return Varint(static_cast<uint64_t>(field) << 3) + Varint(static_cast<uint64_t>(v));
}
std::string Piece(const std::string& text, float score, int type) {
  std::string f(4, '\0');
  std::memcpy(f.data(), &score, 4);
  return Field(1, Field(1, text) + Varint(2 << 3 | 5) + f + FieldVarint(3, type));
}

// BPE model: <unk> <s> </s>, 256 byte pieces, then ▁ a b c ab bc ▁a ▁abc.
std::string TinySpmModel(bool byte_fallback) {
  const std::string sp = "\xe2\x96\x81";
  std::string m = Piece("<unk>", 0, 2) + Piece("<s>", 0, 3) + Piece("</s>", 0, 3);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    m += Piece(buf, 0, 6);
  }
  m += Piece(sp, -1, 1) + Piece("a", -2, 1) + Piece("b", -3, 1) + Piece("c", -4, 1);  // 259..262
  m += Piece("ab", -5, 1) + Piece("bc", -2.5f, 1) + Piece(sp + "a", -1.5f, 1);            // 263..265
  m += Piece(sp + "abc", -6, 1);                                                          // 266
  m += Field(2, FieldVarint(3, 2) + FieldVarint(35, byte_fallback ? 1 : 0) + FieldVarint(40, 0) +
                    FieldVarint(41, 1) + FieldVarint(42, 2) + FieldVarint(43, -1));
  m += Field(3, Field(1, "identity") + FieldVarint(3, 1) + FieldVarint(4, 1) + FieldVarint(5, 1));
  return m;
}

TEST(Llama2cTokenizer, Stories260kEncodesLikeRunC) {
  LIFELINE_REQUIRE_SHARED(Tok512());
  auto tok = LoadTokenizer(Tok512());
  EXPECT_EQ(tok->VocabSize(), 512);
  EXPECT_EQ(tok->BosId(), 1);
  EXPECT_EQ(tok->EosId(), 2);
  const std::string lily = "Once upon a time, there was a little girl named Lily.";
  const auto ids = tok->Encode(lily, true);
  EXPECT_EQ(ids, kLilyIds);
  EXPECT_EQ(tok->Decode(ids), lily);
  std::vector<int64_t> no_bos(kLilyIds.begin() + 1, kLilyIds.end());
  EXPECT_EQ(tok->Encode(lily, false), no_bos);
  EXPECT_EQ(tok->Decode(no_bos), lily);
}

TEST(Llama2cTokenizer, Stories260kByteFallbackRoundTrips) {
  LIFELINE_REQUIRE_SHARED(Tok512());
  auto tok = LoadTokenizer(Tok512());
  const std::string text = "Hello, na\xc3\xafve caf\xc3\xa9 123!\nNew line";
  const auto ids = tok->Encode(text, true);
  EXPECT_EQ(ids, kUnicodeIds);
  EXPECT_EQ(tok->Decode(ids), text);
  EXPECT_EQ(tok->Encode("", true), std::vector<int64_t>{1});
  std::vector<int64_t> with_eos = ids;
  with_eos.push_back(2);
  EXPECT_EQ(tok->Decode(with_eos), text);  // EOS is skipped
  EXPECT_THROW(tok->Decode({512}), ConfigError);
}

TEST(Llama2cTokenizer, HeapMergeMatchesNaiveRunCOnTinyStories) {
  const auto text = DefaultSharedDir() / "data" / "tinystories" / "tinystories_val_dev.txt";
  LIFELINE_REQUIRE_SHARED(Tok512());
  LIFELINE_REQUIRE_SHARED(text);
  auto tok = LoadTokenizer(Tok512());
  std::vector<std::string> samples = LoadStories(text, 12);
  samples.push_back("Question: What is 2+2?\nA. 3\nB. 4\n\nAnswer: B \xe2\x9c\x93 \t caf\xc3\xa9");
  for (const std::string& s : samples) EXPECT_EQ(tok->Encode(s, true), RunCEncode(Tok512(), s)) << s;
}

TEST(Llama2cTokenizer, MergesByBestScore) {
  TempDir dir;
  WriteTinyLlama2c(dir.path() / "tok.bin");
  auto tok = LoadTokenizer(dir.path() / "tok.bin");
  // " " a b c: candidates " a"(7), ab(2), bc(5) -> " a" first; then " a"+b no,
  // b+c -> bc; then " a"+"bc" = " abc"(1).
  EXPECT_EQ(tok->Encode("abc", true), (std::vector<int64_t>{1, 266}));
  // "cab": " " c a b -> ab (2) -> " " c ab. "c" has no merge with " ".
  EXPECT_EQ(tok->Encode("cab", false), (std::vector<int64_t>{259, 262, 263}));
  // 'z' is not in the vocabulary: byte fallback 3 + 0x7a.
  EXPECT_EQ(tok->Encode("z", false), (std::vector<int64_t>{259, 3 + 0x7a}));
  EXPECT_EQ(tok->Decode({1, 259, 262, 263, 3 + 0x7a}), "cabz");
}

TEST(Llama2cTokenizer, TruncatedFileIsAConfigError) {
  TempDir dir;
  WriteTinyLlama2c(dir.path() / "tok.bin");
  std::ifstream in(dir.path() / "tok.bin", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  WriteFile(dir.path() / "cut.bin", bytes.substr(0, bytes.size() - 2));
  try {
    LoadTokenizer(dir.path() / "cut.bin");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("cut.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  WriteFile(dir.path() / "empty.bin", "");
  EXPECT_THROW(LoadTokenizer(dir.path() / "empty.bin"), ConfigError);
}

TEST(LoadTokenizer, DispatchErrors) {
  TempDir dir;
  EXPECT_THROW(LoadTokenizer(dir.path() / "missing.bin"), ConfigError);
  WriteFile(dir.path() / "vocab.txt", "a b c");
  EXPECT_THROW(LoadTokenizer(dir.path() / "vocab.txt"), ConfigError);
  EXPECT_THROW(LoadTokenizer(dir.path()), ConfigError);  // directory without a tokenizer
  WriteFile(dir.path() / "bad.model", "not a protobuf");
  EXPECT_THROW(LoadTokenizer(dir.path() / "bad.model"), ConfigError);
  WriteFile(dir.path() / "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
  EXPECT_THROW(LoadTokenizer(dir.path()), ConfigError);
}

TEST(HfBpeTokenizer, Gpt2StyleEncodesByMergeRank) {
  TempDir dir;
  auto tok = LoadTokenizer(WriteTinyHfTokenizer(dir.path(), false));
  EXPECT_EQ(tok->VocabSize(), 264);
  EXPECT_EQ(tok->EosId(), 262);
  EXPECT_EQ(tok->BosId(), -1);
  // "Hello" -> H e ll o; " the" -> Ġthe (Ġt first, then he, then Ġt+he);
  // " world" -> Ġ w or l d; "!" -> !.
  const std::vector<int64_t> expected = {'H', 'e', 259, 'o', 258, ' ', 'w', 260, 'l', 'd', '!'};
  EXPECT_EQ(tok->Encode("Hello the world!", true), expected);
  EXPECT_EQ(tok->Decode(expected), "Hello the world!");
  // GPT-2 keeps digit runs together: "12345" -> 12 3 4 5.
  EXPECT_EQ(tok->Encode("12345", false), (std::vector<int64_t>{261, '3', '4', '5'}));
  // Two spaces before a word: " " then " the" (\s+(?!\S) leaves one space).
  EXPECT_EQ(tok->Encode("a  the", false), (std::vector<int64_t>{'a', ' ', 258}));
  // Special tokens are matched before splitting and skipped when decoding.
  EXPECT_EQ(tok->Encode("the<|endoftext|> the", false),
            (std::vector<int64_t>{'t', 257, 262, 258}));
  EXPECT_EQ(tok->Decode({'t', 257, 262, 258}), "the the");
  // Contractions split off: "it's" -> it 's.
  EXPECT_EQ(tok->Encode("it's", false), (std::vector<int64_t>{'i', 't', '\'', 's'}));
  // Unicode punctuation is \p{P}, not \p{L}: "a—b" splits as a | — | b.
  EXPECT_EQ(tok->Encode("a\xe2\x80\x94" "b", false), (std::vector<int64_t>{'a', 0xE2, 0x80, 0x94, 'b'}));
  EXPECT_EQ(tok->Encode("a\xc3\xa9", false), (std::vector<int64_t>{'a', 0xC3, 0xA9}));  // "aé": one word
  const std::string utf8 = "caf\xc3\xa9 \xe2\x82\xac\n\xc2\xa0x \xf0\x9f\x98\x80!";
  EXPECT_EQ(tok->Decode(tok->Encode(utf8, false)), utf8);
}

TEST(HfBpeTokenizer, QwenStyleSplitsDigitsSingly) {
  TempDir dir;
  auto tok = LoadTokenizer(WriteTinyHfTokenizer(dir.path(), true));
  EXPECT_EQ(tok->Encode("12345", false), (std::vector<int64_t>{'1', '2', '3', '4', '5'}));
  EXPECT_EQ(tok->Encode("Hello the world!", false),
            (std::vector<int64_t>{'H', 'e', 259, 'o', 258, ' ', 'w', 260, 'l', 'd', '!'}));
  const std::string text = "x = 12;\n\n  if (y) {\n\treturn 'ok';\n}";
  EXPECT_EQ(tok->Decode(tok->Encode(text, false)), text);
}

TEST(SentencePieceTokenizer, HandBuiltBpeModel) {
  TempDir dir;
  WriteFile(dir.path() / "fb.model", TinySpmModel(true));
  auto tok = LoadTokenizer(dir.path() / "fb.model");
  EXPECT_EQ(tok->VocabSize(), 267);
  EXPECT_EQ(tok->BosId(), 1);
  EXPECT_EQ(tok->EosId(), 2);
  // ▁ a b c: best merges by piece score: ▁a (-1.5), then bc (-2.5), then ▁abc (-6).
  EXPECT_EQ(tok->Encode("abc", true), (std::vector<int64_t>{1, 266}));
  // "  cab  ": extra spaces removed -> ▁cab: ab (-5) only (▁c, ca, cab absent).
  EXPECT_EQ(tok->Encode("  cab  ", false), (std::vector<int64_t>{259, 262, 263}));
  // 'z' is unknown: byte fallback to <0x7A> = 3 + 0x7a.
  EXPECT_EQ(tok->Encode("z", false), (std::vector<int64_t>{259, 3 + 0x7a}));
  EXPECT_EQ(tok->Decode({1, 259, 262, 263, 3 + 0x7a, 2}), "cabz");
  EXPECT_EQ(tok->Decode(tok->Encode("ab c", false)), "ab c");

  WriteFile(dir.path() / "unk.model", TinySpmModel(false));
  auto no_fb = LoadTokenizer(dir.path() / "unk.model");
  EXPECT_EQ(no_fb->Encode("zz a", false), (std::vector<int64_t>{259, 0, 265}));  // ▁ <unk> ▁a

  WriteFile(dir.path() / "cut.model", TinySpmModel(true).substr(0, 100));
  EXPECT_THROW(LoadTokenizer(dir.path() / "cut.model"), ConfigError);
}

}  // namespace
}  // namespace lifeline::recovery
