#pragma once
// Group-wise round-to-nearest (RTN) weight quantization, INT2/3/4 (and INT8
// for deployment plans), and fake quantization (quantize-dequantize, QDQ) of
// decoder layers chosen by name pattern (METHOD.md §2.1).
//
// Groups run along the input dimension: a (out, in) weight has out * in / g
// groups of g consecutive input weights. Scales are rounded to BF16 before
// use, so QDQ weights equal what the packed export (packed.hpp) decodes to.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "recovery/model/decoder.hpp"

namespace lifeline::recovery {

enum class QuantScheme {
  kAsymmetric,  // scale = (max - min)/(2^b - 1), zero = round(-min/scale)
  kSymmetric,   // scale = max|w| / (2^(b-1) - 1), zero fixed at 2^(b-1)
};

struct QuantConfig {
  int bits = 2;                                     // 2, 3, 4 (8 for deployment plans)
  int64_t group = 32;                               // weights per group along the input dim
  QuantScheme scheme = QuantScheme::kAsymmetric;    // asymmetric is the paper's
};

// Integer codes and per-group parameters of one quantized weight.
struct GroupQuantized {
  at::Tensor codes;  // (out, in) uint8 in [0, 2^b - 1]
  at::Tensor scale;  // (out, in/g) float32, exactly representable in BF16
  at::Tensor zero;   // (out, in/g) uint8 in [0, 2^b - 1]
};

// Validates `cfg` for a weight (out, in); `where` names the layer.
// Throws ConfigError for unsupported bits or a group not dividing `in`.
void CheckQuantConfig(const QuantConfig& cfg, int64_t in_features, const std::string& where);

// Quantizes a float weight (out, in).
GroupQuantized QuantizeRtn(const at::Tensor& weight, const QuantConfig& cfg,
                           const std::string& where = "weight");
// w' = (q - zero) * scale, (out, in) float32.
at::Tensor Dequantize(const GroupQuantized& q, int64_t group);
// QDQ in one call.
at::Tensor FakeQuantize(const at::Tensor& weight, const QuantConfig& cfg,
                        const std::string& where = "weight");

// Per-layer result of fake quantization.
struct LayerQuantReport {
  std::string name;       // "model.layers.0.mlp.gate_proj"
  int64_t rows = 0;       // out features
  int64_t cols = 0;       // in features
  double rel_error = 0;   // ||W - W'||_F / ||W||_F
};

// Fake-quantizes in place every linear matching `patterns` (see
// PatternMatches). `what` names the option for error messages (e.g.
// "--layers"). Throws ConfigError when a pattern matches nothing (hint lists
// the layers) or the group does not divide a layer's input dimension.
std::vector<LayerQuantReport> FakeQuantizeLayers(Decoder& model,
                                                 const std::vector<std::string>& patterns,
                                                 const QuantConfig& cfg,
                                                 const std::string& what = "--layers");

// "asym" / "sym" <-> QuantScheme (ConfigError on anything else).
QuantScheme ParseQuantScheme(const std::string& s, const std::string& where);
std::string QuantSchemeName(QuantScheme s);

}  // namespace lifeline::recovery
