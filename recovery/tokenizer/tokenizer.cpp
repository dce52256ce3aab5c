#include <fmt/format.h>

#include "recovery/tokenizer/tokenizer.hpp"
#include "common/error.hpp"

namespace lifeline::recovery {

std::unique_ptr<Tokenizer> LoadTokenizer(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer.bin"})
      if (fs::exists(path / name, ec)) return LoadTokenizer(path / name);
    throw ConfigError(fmt::format("{}: no tokenizer.json, tokenizer.model or tokenizer.bin in "
                                  "this directory",
                                  path.string()));
  }
  if (!fs::exists(path, ec))
    throw ConfigError(fmt::format("{}: tokenizer file not found", path.string()));
  const std::string ext = path.extension().string();
  if (ext == ".bin") return LoadLlama2cTokenizer(path);
  if (ext == ".json") return LoadHfBpeTokenizer(path);
  if (ext == ".model") return LoadSentencePieceTokenizer(path);
  throw ConfigError(fmt::format("{}: unknown tokenizer kind '{}'; expected *.bin (llama2.c), "
                                "tokenizer.json (Hugging Face byte-level BPE) or *.model "
                                "(sentencepiece)",
                                path.string(), ext));
}

}  // namespace lifeline::recovery
