// sentencepiece .model, read natively (protobuf wire format) and encoded with
// sentencepiece's BPE and unigram algorithms.
//
// Why not libsentencepiece: Debian's libsentencepiece.so.0 embeds its own
// protobuf-lite, whose exported symbols interpose on libprotobuf.so.32 that
// libtorch loads; a process linking both segfaults during static
// initialization (measured with libsentencepiece 0.1.97 and libtorch 1.13).
// tests/recovery/io/spm_crosscheck_test.cpp (built without LibTorch) checks
// this implementation against libsentencepiece on models it trains.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

#include "recovery/tokenizer/score_merge.hpp"
#include "recovery/tokenizer/tokenizer.hpp"
#include "common/error.hpp"

namespace lifeline::recovery {
namespace {

constexpr const char* kSpace = "\xe2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK, sentencepiece's space

enum class PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
enum class ModelType { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };

// Minimal protobuf wire-format reader over a byte range.
class Wire {
 public:
  Wire(const char* data, size_t size, const std::string& where) : p_(data), end_(data + size), where_(where) {}
  bool Done() const { return p_ >= end_; }
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) throw Bad("truncated varint");
      const uint8_t b = static_cast<uint8_t>(*p_++);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw Bad("varint longer than 10 bytes");
  }
  std::pair<const char*, size_t> Bytes() {
    const uint64_t n = Varint();
    if (n > static_cast<uint64_t>(end_ - p_)) throw Bad("length-delimited field runs past the end");
    const char* start = p_;
    p_ += n;
    return {start, static_cast<size_t>(n)};
  }
  float Fixed32Float() {
    if (end_ - p_ < 4) throw Bad("truncated fixed32");
    float f;
    std::memcpy(&f, p_, 4);
    p_ += 4;
    return f;
  }
  void Skip(int wire_type) {
    switch (wire_type) {
      case 0: Varint(); break;
      case 1: if (end_ - p_ < 8) throw Bad("truncated fixed64"); p_ += 8; break;
      case 2: Bytes(); break;
      case 5: if (end_ - p_ < 4) throw Bad("truncated fixed32"); p_ += 4; break;
      default: throw Bad(fmt::format("unsupported wire type {}", wire_type));
    }
  }
  ConfigError Bad(const std::string& what) const {
    return ConfigError(fmt::format("{}: not a valid sentencepiece model: {}", where_, what));
  }

 private:
  const char* p_;
  const char* end_;
  std::string where_;
};

size_t Utf8Len(unsigned char c) {
  return c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::filesystem::path& path) : where_(path.string()) {
    std::fill(std::begin(byte_ids_), std::end(byte_ids_), int64_t{-1});
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError(fmt::format("{}: cannot open sentencepiece model", where_));
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string data = ss.str();
    Wire w(data.data(), data.size(), where_);
    while (!w.Done()) {
      const uint64_t tag = w.Varint();
      const int field = static_cast<int>(tag >> 3), type = static_cast<int>(tag & 7);
      if (field == 1 && type == 2) {
        ParsePiece(w.Bytes());
      } else if (field == 2 && type == 2) {
        ParseTrainerSpec(w.Bytes());
      } else if (field == 3 && type == 2) {
        ParseNormalizerSpec(w.Bytes());
      } else {
        w.Skip(type);
      }
    }
    if (pieces_.empty()) throw w.Bad("no pieces");
    float min_score = std::numeric_limits<float>::max();
    for (size_t i = 0; i < pieces_.size(); ++i) {
      const Piece& p = pieces_[i];
      if (p.type == PieceType::kNormal || p.type == PieceType::kUserDefined)
        lookup_.emplace(p.text, static_cast<int64_t>(i));
      if (p.type == PieceType::kUserDefined) user_defined_.push_back(static_cast<int64_t>(i));
      if (p.type == PieceType::kByte && p.text.size() == 6)
        byte_ids_[std::stoi(p.text.substr(3, 2), nullptr, 16)] = static_cast<int64_t>(i);
      if (p.type == PieceType::kNormal) {
        min_score = std::min(min_score, p.score);
        max_score_ = std::max(max_score_, p.score);
      }
    }
    unk_score_ = (min_score == std::numeric_limits<float>::max() ? 0.0f : min_score) - 10.0f;
    if (model_type_ != ModelType::kBpe && model_type_ != ModelType::kUnigram)
      throw ConfigError(fmt::format("{}: sentencepiece model type {} is not supported; expected "
                                    "BPE or unigram",
                                    where_, static_cast<int>(model_type_)));
    for (int64_t id : {unk_id_, bos_id_, eos_id_})
      if (id >= static_cast<int64_t>(pieces_.size()))
        throw w.Bad(fmt::format("special id {} outside the {} pieces", id, pieces_.size()));
  }

  std::vector<int64_t> Encode(const std::string& text, bool add_bos) const override {
    std::vector<int64_t> ids;
    if (add_bos && bos_id_ >= 0) ids.push_back(bos_id_);
    const std::string norm = Normalize(text);
    if (norm.empty()) return ids;
    // Split at user-defined pieces (matched longest first), encode the rest.
    size_t pos = 0, start = 0;
    while (pos < norm.size()) {
      int64_t hit = -1;
      size_t hit_len = 0;
      for (int64_t id : user_defined_) {
        const std::string& t = pieces_[static_cast<size_t>(id)].text;
        if (t.size() > hit_len && norm.compare(pos, t.size(), t) == 0) {
          hit = id;
          hit_len = t.size();
        }
      }
      if (hit < 0) {
        pos += Utf8Len(static_cast<unsigned char>(norm[pos]));
        continue;
      }
      EncodeSegment(norm.substr(start, pos - start), ids);
      ids.push_back(hit);
      pos += hit_len;
      start = pos;
    }
    EncodeSegment(norm.substr(start), ids);
    return ids;
  }

  std::string Decode(const std::vector<int64_t>& ids) const override {
    std::string out;
    for (int64_t id : ids) {
      if (id < 0 || id >= VocabSize())
        throw ConfigError(fmt::format("token id {} outside the vocabulary (size {})", id, VocabSize()));
      const Piece& p = pieces_[static_cast<size_t>(id)];
      switch (p.type) {
        case PieceType::kControl:
          break;
        case PieceType::kUnknown:
          out += " \xe2\x81\x87 ";  // " ⁇ ", as sentencepiece
          break;
        case PieceType::kByte:
          out.push_back(static_cast<char>(std::stoi(p.text.substr(3, 2), nullptr, 16)));
          break;
        default:
          out += p.text;
      }
    }
    // Back to spaces; the dummy prefix goes.
    std::string text;
    for (size_t i = 0; i < out.size();) {
      if (out.compare(i, 3, kSpace) == 0) {
        text.push_back(' ');
        i += 3;
      } else {
        text.push_back(out[i++]);
      }
    }
    if (add_dummy_prefix_ && !text.empty() && text[0] == ' ') text.erase(0, 1);
    return text;
  }

  int64_t VocabSize() const override { return static_cast<int64_t>(pieces_.size()); }
  int64_t BosId() const override { return bos_id_; }
  int64_t EosId() const override { return eos_id_; }

 private:
  struct Piece {
    std::string text;
    float score = 0.0f;
    PieceType type = PieceType::kNormal;
  };

  void ParsePiece(std::pair<const char*, size_t> bytes) {
    Wire w(bytes.first, bytes.second, where_);
    Piece p;
    while (!w.Done()) {
      const uint64_t tag = w.Varint();
      const int field = static_cast<int>(tag >> 3), type = static_cast<int>(tag & 7);
      if (field == 1 && type == 2) {
        auto [d, n] = w.Bytes();
        p.text.assign(d, n);
      } else if (field == 2 && type == 5) {
        p.score = w.Fixed32Float();
      } else if (field == 3 && type == 0) {
        const uint64_t t = w.Varint();
        if (t < 1 || t > 6) throw w.Bad(fmt::format("piece {} has unknown type {}", pieces_.size(), t));
        p.type = static_cast<PieceType>(t);
      } else {
        w.Skip(type);
      }
    }
    pieces_.push_back(std::move(p));
  }

  void ParseTrainerSpec(std::pair<const char*, size_t> bytes) {
    Wire w(bytes.first, bytes.second, where_);
    while (!w.Done()) {
      const uint64_t tag = w.Varint();
      const int field = static_cast<int>(tag >> 3), type = static_cast<int>(tag & 7);
      if (type != 0) {
        w.Skip(type);
        continue;
      }
      const auto v = static_cast<int64_t>(static_cast<int32_t>(w.Varint()));
      switch (field) {
        case 3: model_type_ = static_cast<ModelType>(v); break;
        case 35: byte_fallback_ = v != 0; break;
        case 40: unk_id_ = v; break;
        case 41: bos_id_ = v; break;
        case 42: eos_id_ = v; break;
        default: break;
      }
    }
  }

  void ParseNormalizerSpec(std::pair<const char*, size_t> bytes) {
    Wire w(bytes.first, bytes.second, where_);
    while (!w.Done()) {
      const uint64_t tag = w.Varint();
      const int field = static_cast<int>(tag >> 3), type = static_cast<int>(tag & 7);
      if (field == 1 && type == 2) {
        auto [d, n] = w.Bytes();
        normalizer_name_.assign(d, n);
      } else if (type == 0 && (field == 3 || field == 4 || field == 5)) {
        const bool v = w.Varint() != 0;
        if (field == 3) add_dummy_prefix_ = v;
        if (field == 4) remove_extra_whitespaces_ = v;
        if (field == 5) escape_whitespaces_ = v;
      } else {
        w.Skip(type);
      }
    }
  }

  // sentencepiece's normalizer for text NFKC leaves unchanged: the nmt_*
  // rules turn ASCII control whitespace into spaces; optional collapsing of
  // whitespace; dummy prefix; spaces escaped as U+2581.
  std::string Normalize(const std::string& text) const {
    std::string s;
    const bool nmt = normalizer_name_.rfind("nmt", 0) == 0;
    for (char c : text) {
      if (nmt && (c == '\t' || c == '\n' || c == '\r')) c = ' ';
      s.push_back(c);
    }
    if (remove_extra_whitespaces_) {
      std::string t;
      for (char c : s) {
        if (c == ' ' && (t.empty() || t.back() == ' ')) continue;
        t.push_back(c);
      }
      while (!t.empty() && t.back() == ' ') t.pop_back();
      s = std::move(t);
    }
    if (s.empty()) return s;
    if (add_dummy_prefix_) s = std::string(1, ' ') + s;
    if (!escape_whitespaces_) return s;
    std::string out;
    for (char c : s) {
      if (c == ' ')
        out += kSpace;
      else
        out.push_back(c);
    }
    return out;
  }

  int64_t Find(const std::string& s) const {
    auto it = lookup_.find(s);
    return it == lookup_.end() ? -1 : it->second;
  }

  // A final symbol to ids: the piece, else its bytes (byte_fallback), else unk.
  void Emit(const std::string& symbol, std::vector<int64_t>& ids) const {
    const int64_t id = Find(symbol);
    if (id >= 0) {
      ids.push_back(id);
    } else if (byte_fallback_) {
      for (unsigned char b : symbol) {
        if (byte_ids_[b] < 0) throw ConfigError(fmt::format("{}: byte piece <0x{:02X}> missing", where_, b));
        ids.push_back(byte_ids_[b]);
      }
    } else if (ids.empty() || ids.back() != unk_id_) {
      ids.push_back(unk_id_);  // consecutive unknowns collapse into one unk, as sentencepiece
    }
  }

  void EncodeSegment(const std::string& s, std::vector<int64_t>& ids) const {
    if (s.empty()) return;
    std::vector<std::string> symbols;
    for (size_t i = 0; i < s.size();) {
      const size_t n = std::min(Utf8Len(static_cast<unsigned char>(s[i])), s.size() - i);
      symbols.push_back(s.substr(i, n));
      i += n;
    }
    if (model_type_ == ModelType::kBpe) {
      // Merge the adjacent pair whose concatenation is a piece with the best
      // score (leftmost on ties) until none is.
      symbols = internal::MergeByBestScore(
          std::move(symbols),
          [&](const std::string& a, const std::string& b)
              -> std::optional<std::pair<std::string, float>> {
            std::string merged = a + b;
            const int64_t id = Find(merged);
            if (id < 0) return std::nullopt;
            return std::make_pair(std::move(merged), pieces_[static_cast<size_t>(id)].score);
          });
      for (const std::string& sym : symbols) Emit(sym, ids);
      return;
    }
    // Unigram: Viterbi over character boundaries maximizing the summed score.
    std::vector<size_t> offset(symbols.size() + 1, 0);
    for (size_t i = 0; i < symbols.size(); ++i) offset[i + 1] = offset[i] + symbols[i].size();
    const size_t n = symbols.size();
    std::vector<double> best(n + 1, -std::numeric_limits<double>::infinity());
    std::vector<size_t> back(n + 1, 0);
    std::vector<int64_t> back_id(n + 1, -1);
    best[0] = 0;
    for (size_t i = 0; i < n; ++i) {
      if (best[i] == -std::numeric_limits<double>::infinity()) continue;
      bool single = false;
      for (size_t j = i + 1; j <= n; ++j) {
        const int64_t id = Find(s.substr(offset[i], offset[j] - offset[i]));
        if (id < 0) continue;
        const Piece& p = pieces_[static_cast<size_t>(id)];
        const double score = p.type == PieceType::kUserDefined
                                 ? static_cast<double>(j - i) * max_score_ - 0.1
                                 : p.score;
        if (j == i + 1) single = true;
        if (best[i] + score > best[j]) {
          best[j] = best[i] + score;
          back[j] = i;
          back_id[j] = id;
        }
      }
      if (!single && best[i] + unk_score_ > best[i + 1]) {
        best[i + 1] = best[i] + unk_score_;
        back[i + 1] = i;
        back_id[i + 1] = -1;  // unknown character
      }
    }
    std::vector<std::pair<int64_t, std::string>> path;  // (id or -1, text)
    for (size_t j = n; j > 0; j = back[j])
      path.push_back({back_id[j], s.substr(offset[back[j]], offset[j] - offset[back[j]])});
    for (auto it = path.rbegin(); it != path.rend(); ++it) {
      if (it->first >= 0) {
        ids.push_back(it->first);
      } else {
        Emit(it->second, ids);
      }
    }
  }

  std::string where_;
  std::vector<Piece> pieces_;
  std::unordered_map<std::string, int64_t> lookup_;  // normal and user-defined pieces
  std::vector<int64_t> user_defined_;
  int64_t byte_ids_[256];  // byte -> <0xNN> piece id, -1 when absent
  ModelType model_type_ = ModelType::kUnigram;
  bool byte_fallback_ = false;
  int64_t unk_id_ = 0, bos_id_ = 1, eos_id_ = 2;
  std::string normalizer_name_;
  bool add_dummy_prefix_ = true, remove_extra_whitespaces_ = true, escape_whitespaces_ = true;
  float max_score_ = 0.0f;
  float unk_score_ = -10.0f;
};

}  // namespace

std::unique_ptr<Tokenizer> LoadSentencePieceTokenizer(const std::filesystem::path& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

}  // namespace lifeline::recovery
