#include "roofline/spec/ggml_format.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace lifeline {

const std::vector<GgmlBlockLayout>& GgmlLayouts() {
  // Block sizes: ggml/src/ggml-common.h (QK4_0 = QK8_0 = 32, QK_K = 256).
  static const std::vector<GgmlBlockLayout> kLayouts = {
      {GgmlType::kF32, "f32", 1, 4, 32, "float32"},
      {GgmlType::kF16, "f16", 1, 2, 16, "IEEE float16"},
      {GgmlType::kQ4_0, "q4_0", 32, 18, 4, "fp16 scale d + 16 bytes of 4-bit values; w = d * (q - 8)"},
      {GgmlType::kQ8_0, "q8_0", 32, 34, 8, "fp16 scale d + 32 int8 values; w = d * q"},
      {GgmlType::kQ2_K, "q2_k", 256, 84, 2,
       "16 bytes of 4-bit sub-block scales|mins + 64 bytes of 2-bit values + fp16 d + fp16 dmin; 16 sub-blocks of 16"},
      {GgmlType::kQ3_K, "q3_k", 256, 110, 3,
       "32-byte high-bit mask + 64 bytes of 2-bit low values + 12 bytes of 6-bit scales + fp16 d; 16 sub-blocks of 16"},
      {GgmlType::kQ4_K, "q4_k", 256, 144, 4,
       "fp16 d + fp16 dmin + 12 bytes of 6-bit scales|mins + 128 bytes of 4-bit values; 8 sub-blocks of 32"},
  };
  return kLayouts;
}

const GgmlBlockLayout& GgmlLayout(GgmlType t) {
  for (const auto& l : GgmlLayouts()) {
    if (l.type == t) return l;
  }
  throw std::logic_error("GgmlLayout: type id " + std::to_string(static_cast<int>(t)) + " has no layout");
}

std::optional<GgmlType> ParseGgmlType(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& l : GgmlLayouts()) {
    if (lower == l.name) return l.type;
  }
  return std::nullopt;
}

double GgmlBitsPerWeight(GgmlType t) {
  const auto& l = GgmlLayout(t);
  return 8.0 * static_cast<double>(l.block_bytes) / static_cast<double>(l.block_elements);
}

int64_t GgmlRowBytes(GgmlType t, int64_t elements) {
  const auto& l = GgmlLayout(t);
  if (elements % l.block_elements != 0) {
    throw std::logic_error(std::string("GgmlRowBytes: ") + std::to_string(elements) + " weights are not a whole number of " +
                           l.name + " blocks of " + std::to_string(l.block_elements));
  }
  return elements / l.block_elements * l.block_bytes;
}

}  // namespace lifeline
