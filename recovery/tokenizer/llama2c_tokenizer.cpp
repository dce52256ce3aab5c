// llama2.c tokenizer.bin, encoding and decoding exactly as karpathy's run.c.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>

#include "recovery/tokenizer/score_merge.hpp"
#include "recovery/tokenizer/tokenizer.hpp"
#include "common/error.hpp"

namespace lifeline::recovery {
namespace {

constexpr int64_t kBos = 1;
constexpr int64_t kEos = 2;
constexpr int64_t kByteOffset = 3;  // <0x00> is id 3

class Llama2cTokenizer final : public Tokenizer {
 public:
  explicit Llama2cTokenizer(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError(fmt::format("{}: cannot open tokenizer", path.string()));
    int32_t max_len = 0;
    if (!in.read(reinterpret_cast<char*>(&max_len), 4))
      throw ConfigError(fmt::format("{}: truncated llama2.c tokenizer (no header)", path.string()));
    if (max_len <= 0 || max_len > (1 << 16))
      throw ConfigError(fmt::format("{}: implausible max_token_length {} in the header; is this a "
                                    "llama2.c tokenizer.bin?",
                                    path.string(), max_len));
    while (true) {
      float score = 0;
      if (!in.read(reinterpret_cast<char*>(&score), 4)) {
        if (in.gcount() == 0) break;  // clean end of file
        throw ConfigError(fmt::format("{}: truncated at token {}", path.string(), pieces_.size()));
      }
      int32_t len = 0;
      if (!in.read(reinterpret_cast<char*>(&len), 4) || len < 0 || len > max_len)
        throw ConfigError(fmt::format("{}: token {}: bad or truncated length (max_token_length "
                                      "{})",
                                      path.string(), pieces_.size(), max_len));
      std::string piece(static_cast<size_t>(len), '\0');
      if (len > 0 && !in.read(piece.data(), len))
        throw ConfigError(fmt::format("{}: truncated at token {}", path.string(), pieces_.size()));
      scores_.push_back(score);
      pieces_.push_back(std::move(piece));
    }
    if (pieces_.size() < static_cast<size_t>(kByteOffset + 256))
      throw ConfigError(fmt::format("{}: only {} tokens; a llama2.c tokenizer has BOS, EOS and 256 "
                                    "byte-fallback tokens at least",
                                    path.string(), pieces_.size()));
    for (size_t i = 0; i < pieces_.size(); ++i)
      lookup_.emplace(pieces_[i], static_cast<int64_t>(i));  // first id wins on duplicates
  }

  std::vector<int64_t> Encode(const std::string& text, bool add_bos) const override {
    std::vector<int64_t> tokens;
    if (add_bos) tokens.push_back(kBos);
    if (!text.empty()) {
      const int64_t dummy = Find(" ");
      if (dummy >= 0) tokens.push_back(dummy);
    }
    // UTF-8 characters (at most 4 bytes), byte fallback when not in the vocab.
    std::string buf;
    for (size_t i = 0; i < text.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(text[i]);
      if ((c & 0xC0) != 0x80) buf.clear();
      buf.push_back(static_cast<char>(c));
      const bool next_is_cont =
          i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80;
      if (next_is_cont && buf.size() < 4) continue;
      const int64_t id = Find(buf);
      if (id >= 0) {
        tokens.push_back(id);
      } else {
        for (unsigned char b : buf) tokens.push_back(static_cast<int64_t>(b) + kByteOffset);
      }
      buf.clear();
    }
    // Merge the best-scoring adjacent pair until none merges (BOS never
    // merges: "\n<s>\n" + piece is not in the vocabulary).
    std::string pair;
    tokens = internal::MergeByBestScore(
        std::move(tokens), [&](int64_t a, int64_t b) -> std::optional<std::pair<int64_t, float>> {
          pair.assign(pieces_[static_cast<size_t>(a)]);
          pair += pieces_[static_cast<size_t>(b)];
          const int64_t id = Find(pair);
          if (id < 0) return std::nullopt;
          return std::make_pair(id, scores_[static_cast<size_t>(id)]);
        });
    return tokens;
  }

  std::string Decode(const std::vector<int64_t>& ids) const override {
    std::string out;
    bool first = true;
    for (int64_t id : ids) {
      if (id == kBos || id == kEos) continue;
      if (id < 0 || id >= VocabSize())
        throw ConfigError(fmt::format("token id {} outside the vocabulary (size {})", id,
                                      VocabSize()));
      const std::string& piece = pieces_[static_cast<size_t>(id)];
      if (id >= kByteOffset && id < kByteOffset + 256) {
        // <0xNN> byte-fallback token.
        unsigned int byte = 0;
        if (piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%02X>", &byte) == 1) {
          out.push_back(static_cast<char>(byte));
          first = false;
          continue;
        }
      }
      // The dummy-prefix space the encoder added is dropped (run.c drops it
      // after BOS; sentencepiece drops it at the start).
      if (first && !piece.empty() && piece[0] == ' ')
        out.append(piece, 1, std::string::npos);
      else
        out += piece;
      first = false;
    }
    return out;
  }

  int64_t VocabSize() const override { return static_cast<int64_t>(pieces_.size()); }
  int64_t BosId() const override { return kBos; }
  int64_t EosId() const override { return kEos; }

 private:
  int64_t Find(const std::string& s) const {
    auto it = lookup_.find(s);
    return it == lookup_.end() ? -1 : it->second;
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int64_t> lookup_;
};

}  // namespace

std::unique_ptr<Tokenizer> LoadLlama2cTokenizer(const std::filesystem::path& path) {
  return std::make_unique<Llama2cTokenizer>(path);
}

}  // namespace lifeline::recovery
