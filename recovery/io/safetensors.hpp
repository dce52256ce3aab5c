#pragma once
// safetensors reader and writer (https://github.com/huggingface/safetensors).
//
// File layout: 8-byte little-endian header length N, N bytes of JSON header
// {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..],
// "data_offsets": [begin, end]}, ...}, then the data buffer; offsets are
// relative to the start of the buffer.
//
// Headers are untrusted: the reader checks the header length against the file
// size, parses the JSON, and for every tensor checks the dtype, the shape
// (non-negative dims, no overflow), that end - begin equals numel * element
// size, that the range lies inside the buffer and that no two ranges overlap.
// Every violation throws lifeline::ConfigError naming the file and tensor.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace lifeline::recovery {

// Reads every tensor of a safetensors file onto the CPU, keeping its stored
// dtype (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL). Throws ConfigError
// for a missing, truncated or malformed file.
std::map<std::string, at::Tensor> ReadSafetensors(const std::filesystem::path& path);

// Reads only the `__metadata__` map of a safetensors file (empty when absent).
std::map<std::string, std::string> ReadSafetensorsMetadata(
    const std::filesystem::path& path);

// One header entry, as validated by the reader.
struct SafetensorsEntry {
  std::string name;            // tensor name
  std::string dtype;           // safetensors dtype code, e.g. "F32"
  std::vector<int64_t> shape;  // dims
  uint64_t begin_bytes = 0;    // start offset in the data buffer
  uint64_t end_bytes = 0;      // one past the end offset in the data buffer
};

// Reads and validates the header only (no tensor data), entries sorted by
// offset. Useful to list a checkpoint without loading it.
std::vector<SafetensorsEntry> ReadSafetensorsHeader(const std::filesystem::path& path);

// Writes `tensors` (any device; moved to CPU and made contiguous) and the
// optional `__metadata__` strings. Written to a temporary file in the same
// directory, then renamed over `path`, so readers never see a partial file.
// Throws ConfigError for an unsupported dtype or an unwritable path.
void WriteSafetensors(const std::filesystem::path& path,
                      const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace lifeline::recovery
