#pragma once
// Tokenizer interface shared by every tokenizer lifeline reads
// (llama2.c tokenizer.bin, Hugging Face byte-level BPE tokenizer.json,
// sentencepiece .model).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

struct pcre2_real_code_8;  // PCRE2's compiled pattern (pcre2.h, 8-bit)

namespace lifeline::recovery {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Text to ids. `add_bos` prepends the BOS id when the tokenizer has one.
  virtual std::vector<int64_t> Encode(const std::string& text, bool add_bos) const = 0;
  // Ids to text (special tokens such as BOS/EOS are skipped). The leading
  // space the encoder adds (llama2.c / sentencepiece dummy prefix) is dropped
  // from the first piece, so Decode(Encode(s)) == s; decode whole sequences,
  // not one token at a time, to keep the spaces between words.
  virtual std::string Decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t VocabSize() const = 0;
  virtual int64_t BosId() const = 0;  // -1 when none
  virtual int64_t EosId() const = 0;  // -1 when none
};

// Opens a tokenizer by file kind: `*.bin` (llama2.c), `tokenizer.json`
// (byte-level BPE), `*.model` (sentencepiece). Throws ConfigError naming the
// file when it is missing, truncated or malformed.
// A directory is searched for tokenizer.json, then tokenizer.model, then
// tokenizer.bin.
std::unique_ptr<Tokenizer> LoadTokenizer(const std::filesystem::path& path);

// The concrete loaders LoadTokenizer dispatches to.
//
// llama2.c tokenizer.bin: int32 max_token_length, then per token float32
// score, int32 length, bytes. BOS = 1, EOS = 2, byte fallback <0xNN> = 3 + NN.
// Encoding is run.c's: dummy-prefix space, UTF-8 characters (byte fallback
// when absent), then repeatedly merge the adjacent pair whose concatenation
// is in the vocabulary with the best score.
std::unique_ptr<Tokenizer> LoadLlama2cTokenizer(const std::filesystem::path& path);
// Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, Qwen2/3,
// Llama 3): byte-to-unicode map, merge ranks, the file's own pre-tokenizer
// regexes (Split with behavior Isolated, ByteLevel's GPT-2 regex when
// use_regex) run with PCRE2 in Unicode mode (RegexSplitter below; no NFC
// normalization), added tokens matched before splitting. BOS/EOS are taken
// from the added tokens (<s>, <|begin_of_text|> / </s>, <|endoftext|>,
// <|end_of_text|>).
std::unique_ptr<Tokenizer> LoadHfBpeTokenizer(const std::filesystem::path& path);

// A Hugging Face Split pre-tokenizer (behavior Isolated): every match of the
// regex is a piece and so is every stretch of text between matches. The
// regex runs in PCRE2's UTF + UCP mode, so \p{L}, \p{N} and \s follow the
// Unicode character properties (combining marks are neither letters nor
// numbers; every script's digits are numbers). `where` prefixes the error
// when the pattern does not compile; `literal` matches the pattern as plain
// text (tokenizer.json's {"String": ...}).
class RegexSplitter {
 public:
  RegexSplitter(const std::string& pattern, const std::string& where, bool literal = false);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;
  std::vector<std::string> Split(const std::string& text) const;

 private:
  std::string pattern_;
  pcre2_real_code_8* code_ = nullptr;
};
// sentencepiece .model (BPE or unigram), parsed natively from its protobuf
// wire format: pieces, scores, types, unk/bos/eos ids, byte_fallback, the
// normalizer's add_dummy_prefix / remove_extra_whitespaces flags. The
// precompiled NFKC charsmap is not applied (exact for text NFKC leaves as
// is). Not linked to libsentencepiece: that library cannot share a process
// with libtorch (see sentencepiece_tokenizer.cpp); a test built without
// libtorch checks this reader against it.
std::unique_ptr<Tokenizer> LoadSentencePieceTokenizer(const std::filesystem::path& path);

}  // namespace lifeline::recovery
