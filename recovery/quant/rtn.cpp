#include "recovery/quant/rtn.hpp"

#include <fmt/format.h>
#include <torch/types.h>

#include "common/error.hpp"

namespace lifeline::recovery {

namespace {
// Rounds to the nearest BF16 value (kept in float32).
at::Tensor ToBf16Exact(const at::Tensor& x) { return x.to(at::kBFloat16).to(at::kFloat); }
}  // namespace

void CheckQuantConfig(const QuantConfig& cfg, int64_t in_features, const std::string& where) {
  if (cfg.bits != 2 && cfg.bits != 3 && cfg.bits != 4 && cfg.bits != 8) {
    throw ConfigError(fmt::format("{}: unsupported bit width {}; expected 2, 3, 4 or 8", where,
                                  cfg.bits));
  }
  if (cfg.group <= 0 || in_features % cfg.group != 0) {
    std::vector<int64_t> divisors;
    for (int64_t d = 8; d <= in_features; d *= 2) {
      if (in_features % d == 0) divisors.push_back(d);
    }
    throw ConfigError(fmt::format(
        "{}: group size {} does not divide the input dimension {}. hint: use a divisor such "
        "as {}",
        where, cfg.group, in_features,
        divisors.empty() ? std::to_string(in_features) : fmt::format("{}", fmt::join(divisors, ", "))));
  }
}

GroupQuantized QuantizeRtn(const at::Tensor& weight, const QuantConfig& cfg,
                           const std::string& where) {
  LIFELINE_CHECK(weight.dim() == 2, "weight must be 2-D");
  const int64_t out = weight.size(0), in = weight.size(1);
  CheckQuantConfig(cfg, in, where);
  const int64_t ng = in / cfg.group;
  const double qmax = static_cast<double>((1 << cfg.bits) - 1);
  const at::Tensor w = weight.detach().to(at::kFloat).reshape({out, ng, cfg.group});  // (out, ng, g)
  at::Tensor scale, zero;
  if (cfg.scheme == QuantScheme::kAsymmetric) {
    const at::Tensor mn = std::get<0>(w.min(-1));  // (out, ng)
    const at::Tensor mx = std::get<0>(w.max(-1));
    scale = ToBf16Exact(((mx - mn) / qmax).clamp_min(1e-8));
    zero = at::round(-mn / scale).clamp(0, qmax);
  } else {
    const double half = static_cast<double>(1 << (cfg.bits - 1));
    scale = ToBf16Exact((std::get<0>(w.abs().max(-1)) / (half - 1)).clamp_min(1e-8));
    zero = at::full_like(scale, half);
  }
  const at::Tensor q =
      (at::round(w / scale.unsqueeze(-1)) + zero.unsqueeze(-1)).clamp(0, qmax);  // (out, ng, g)
  return {q.reshape({out, in}).to(at::kByte), scale, zero.to(at::kByte)};
}

at::Tensor Dequantize(const GroupQuantized& q, int64_t group) {
  const int64_t out = q.codes.size(0), in = q.codes.size(1);
  const at::Tensor c = q.codes.to(at::kFloat).reshape({out, in / group, group});
  return ((c - q.zero.to(at::kFloat).unsqueeze(-1)) * q.scale.unsqueeze(-1)).reshape({out, in});
}

at::Tensor FakeQuantize(const at::Tensor& weight, const QuantConfig& cfg, const std::string& where) {
  return Dequantize(QuantizeRtn(weight, cfg, where), cfg.group).to(weight.options());
}

std::vector<LayerQuantReport> FakeQuantizeLayers(Decoder& model,
                                                 const std::vector<std::string>& patterns,
                                                 const QuantConfig& cfg, const std::string& what) {
  const auto layers = model->SelectLinears(patterns, what);
  for (const auto& [name, lin] : layers) CheckQuantConfig(cfg, lin->InFeatures(), what + ": " + name);
  std::vector<LayerQuantReport> out;
  torch::NoGradGuard no_grad;
  for (const auto& [name, lin] : layers) {
    at::Tensor w = lin->BaseWeight();
    const at::Tensor wq = FakeQuantize(w, cfg, name);
    LayerQuantReport r;
    r.name = name;
    r.rows = w.size(0);
    r.cols = w.size(1);
    r.rel_error = ((w - wq).norm() / w.norm().clamp_min(1e-30)).item<double>();
    w.copy_(wq);
    out.push_back(r);
  }
  return out;
}

QuantScheme ParseQuantScheme(const std::string& s, const std::string& where) {
  if (s == "asym" || s == "asymmetric") return QuantScheme::kAsymmetric;
  if (s == "sym" || s == "symmetric") return QuantScheme::kSymmetric;
  throw ConfigError(fmt::format("{}: unknown quantization scheme '{}'; expected asym or sym",
                                where, s));
}

std::string QuantSchemeName(QuantScheme s) {
  return s == QuantScheme::kAsymmetric ? "asym" : "sym";
}

}  // namespace lifeline::recovery
