#include "recovery/quant/packed.hpp"

#include <cstring>

#include "common/error.hpp"

namespace lifeline::recovery {

int64_t PackedWeightBytes(int64_t rows, int64_t cols, int bits, int64_t group) {
  return PackedWeightBytes(rows, cols, QuantConfig{bits, group, QuantScheme::kAsymmetric});
}

int64_t PackedWeightBytes(int64_t rows, int64_t cols, const QuantConfig& cfg) {
  const int64_t n = rows * cols;
  const int64_t groups = n / cfg.group;
  int64_t bytes = (n * cfg.bits + 7) / 8 + 2 * groups;
  if (cfg.scheme == QuantScheme::kAsymmetric) bytes += (groups * cfg.bits + 7) / 8;
  return bytes;
}

std::vector<uint8_t> PackBits(const uint8_t* values, int64_t n, int bits) {
  std::vector<uint8_t> out(static_cast<size_t>((n * bits + 7) / 8), 0);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t v = values[i] & ((1u << bits) - 1);
    const int64_t bit = i * bits;
    out[bit / 8] |= static_cast<uint8_t>(v << (bit % 8));
    if (bit % 8 + bits > 8) out[bit / 8 + 1] |= static_cast<uint8_t>(v >> (8 - bit % 8));
  }
  return out;
}

std::vector<uint8_t> UnpackBits(const std::vector<uint8_t>& packed, int64_t n, int bits) {
  LIFELINE_CHECK(static_cast<int64_t>(packed.size()) * 8 >= n * bits, "packed buffer too short");
  std::vector<uint8_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t bit = i * bits;
    uint32_t v = packed[bit / 8] >> (bit % 8);
    if (bit % 8 + bits > 8) v |= static_cast<uint32_t>(packed[bit / 8 + 1]) << (8 - bit % 8);
    out[i] = static_cast<uint8_t>(v & ((1u << bits) - 1));
  }
  return out;
}

PackedWeight PackQuantized(const GroupQuantized& q, const QuantConfig& cfg) {
  PackedWeight p;
  p.bits = cfg.bits;
  p.rows = q.codes.size(0);
  p.cols = q.codes.size(1);
  p.group = cfg.group;
  p.scheme = cfg.scheme;
  const at::Tensor codes = q.codes.contiguous();
  p.codes = PackBits(codes.data_ptr<uint8_t>(), codes.numel(), cfg.bits);
  const at::Tensor sc = q.scale.contiguous().to(at::kBFloat16);
  p.scales_bf16.resize(static_cast<size_t>(sc.numel()));
  std::memcpy(p.scales_bf16.data(), sc.data_ptr(), p.scales_bf16.size() * 2);
  if (cfg.scheme == QuantScheme::kAsymmetric) {
    const at::Tensor z = q.zero.contiguous();
    p.zeros = PackBits(z.data_ptr<uint8_t>(), z.numel(), cfg.bits);
  }
  return p;
}

PackedWeight PackWeight(const at::Tensor& weight, const QuantConfig& cfg, const std::string& where) {
  return PackQuantized(QuantizeRtn(weight, cfg, where), cfg);
}

at::Tensor UnpackWeight(const PackedWeight& p) {
  const int64_t n = p.rows * p.cols, groups = n / p.group;
  GroupQuantized q;
  auto codes = UnpackBits(p.codes, n, p.bits);
  q.codes = at::from_blob(codes.data(), {p.rows, p.cols}, at::kByte).clone();
  std::vector<uint16_t> scales = p.scales_bf16;
  q.scale = at::from_blob(scales.data(), {p.rows, p.cols / p.group}, at::kBFloat16)
                .to(at::kFloat);
  if (p.scheme == QuantScheme::kAsymmetric) {
    auto zeros = UnpackBits(p.zeros, groups, p.bits);
    q.zero = at::from_blob(zeros.data(), {p.rows, p.cols / p.group}, at::kByte).clone();
  } else {
    q.zero = at::full({p.rows, p.cols / p.group}, 1 << (p.bits - 1), at::kByte);
  }
  return Dequantize(q, p.group);
}

}  // namespace lifeline::recovery
