#pragma once
// ggml's tensor storage formats (ggml/include/ggml.h `enum ggml_type` and the
// block structs of ggml/src/ggml-common.h). The roofline counts weight bytes
// with these layouts when a plan names them, so a forecast streams exactly the
// bytes llama.cpp streams; the GGUF writer (experiments/measure) packs them.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline {

// Values are ggml's own type ids (written into GGUF tensor infos).
enum class GgmlType : int32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
};

struct GgmlBlockLayout {
  GgmlType type;
  const char* name;        // lower-case ggml name: "q4_0", "q2_k", "f16"
  int64_t block_elements;  // weights per block (1 for f32/f16, 32 for q4_0/q8_0, 256 for k-quants)
  int64_t block_bytes;     // bytes per block, from ggml-common.h's static_asserts
  int value_bits;          // bits of one weight's quantized value (16/32 for float types)
  const char* layout;      // the block struct in words, for reports and docs
};

const GgmlBlockLayout& GgmlLayout(GgmlType t);
// Every type this project reads and writes, in ggml id order.
const std::vector<GgmlBlockLayout>& GgmlLayouts();
// "q4_0", "Q4_0", "q2_k", "f16" ...; nullopt when the name is not one of GgmlLayouts().
std::optional<GgmlType> ParseGgmlType(std::string_view name);
// Storage bits per weight including the block's scales/mins (Q4_0: 4.5, Q2_K: 2.625).
double GgmlBitsPerWeight(GgmlType t);
// Bytes of a row of `elements` weights; `elements` must be a multiple of block_elements.
int64_t GgmlRowBytes(GgmlType t, int64_t elements);

}  // namespace lifeline
