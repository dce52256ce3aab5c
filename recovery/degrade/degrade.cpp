#include "recovery/degrade/degrade.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <unordered_set>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <torch/types.h>

#include "common/error.hpp"
#include "recovery/degrade/float_format.hpp"

namespace lifeline::recovery {

namespace {

double L2(const at::Tensor& t) { return t.to(at::kDouble).norm().item<double>(); }

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::string KindFlag(const std::string& kind) {
  if (kind == "noise") return "--noise-rel-l2 / --noise-l2";
  if (kind == "dtype") return "--dtype";
  if (kind == "bitflip") return "--bitflip-rate";
  return "--bits / --group / --scheme";
}

}  // namespace

const std::vector<std::string>& DegradationKinds() {
  static const std::vector<std::string> kinds = {"quant", "noise", "dtype", "bitflip"};
  return kinds;
}

uint64_t DegradeSeed(uint64_t seed, size_t kind_index, size_t layer_index) {
  return SplitMix64(SplitMix64(seed) ^ (static_cast<uint64_t>(kind_index + 1) << 32) ^ (layer_index + 1));
}

void CheckDegradeConfig(const DegradeConfig& cfg) {
  if (cfg.kinds.empty())
    throw MakeConfigError("--degrade", "degrade", "empty list", fmt::format("one or more of: {}", fmt::join(DegradationKinds(), ", ")));
  for (size_t i = 0; i < cfg.kinds.size(); ++i) {
    const std::string& k = cfg.kinds[i];
    if (std::find(DegradationKinds().begin(), DegradationKinds().end(), k) == DegradationKinds().end())
      throw MakeConfigError("--degrade", "degrade", fmt::format("unknown degradation '{}'", k),
                            fmt::format("a comma-separated list of: {}", fmt::join(DegradationKinds(), ", ")));
    for (size_t j = 0; j < i; ++j)
      if (cfg.kinds[j] == k)
        throw MakeConfigError("--degrade", "degrade", fmt::format("'{}' is listed twice", k),
                              "each kind at most once (its strength is set by its own flags)",
                              fmt::format("raise {} instead", KindFlag(k)));
  }
  if (cfg.noise_rel_l2 > 0 && cfg.noise_l2 > 0)
    throw MakeConfigError("--noise-l2", "noise_l2", "given together with noise_rel_l2",
                          "one noise target: noise_rel_l2 (||dW||/||W||) or noise_l2 (||dW||)");
  if (!std::isfinite(cfg.noise_rel_l2) || cfg.noise_rel_l2 < 0)
    throw MakeConfigError("--noise-rel-l2", "noise_rel_l2", fmt::format("{} is not a finite number >= 0", cfg.noise_rel_l2), "e.g. 0.1");
  if (!std::isfinite(cfg.noise_l2) || cfg.noise_l2 < 0)
    throw MakeConfigError("--noise-l2", "noise_l2", fmt::format("{} is not a finite number >= 0", cfg.noise_l2), "e.g. 1.5");
  FindFloatFormat(cfg.dtype, "--dtype");
  if (!std::isfinite(cfg.bitflip_rate) || cfg.bitflip_rate <= 0 || cfg.bitflip_rate > kMaxBitflipRate)
    throw MakeConfigError("--bitflip-rate", "bitflip_rate", fmt::format("{} is out of range", cfg.bitflip_rate),
                          fmt::format("a fraction of bits > 0 and <= {}", kMaxBitflipRate));
}

void AddScaledNoise(at::Tensor& w, double target_l2, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor g = at::normal(0.0, 1.0, w.sizes(), gen, w.options().dtype(at::kDouble));
  const double gn = g.norm().item<double>();
  LIFELINE_CHECK(gn > 0, "Gaussian draw of norm 0");
  w.copy_((w.to(at::kDouble) + g * (target_l2 / gn)).to(w.scalar_type()));
}

BitflipCounts FlipBits(at::Tensor& w, double rate, uint64_t seed) {
  LIFELINE_CHECK(w.scalar_type() == at::kFloat && w.is_contiguous() && w.device().is_cpu(),
                 "bit flips act on a contiguous float32 CPU tensor");
  BitflipCounts c;
  const uint64_t n_bits = static_cast<uint64_t>(w.numel()) * 32;
  std::mt19937_64 rng(seed);
  std::binomial_distribution<uint64_t> count(n_bits, rate);
  c.drawn = static_cast<int64_t>(count(rng));
  std::uniform_int_distribution<uint64_t> pos(0, n_bits - 1);
  std::unordered_set<uint64_t> chosen;
  chosen.reserve(static_cast<size_t>(c.drawn) * 2);
  std::vector<uint64_t> order;  // in draw order, so the result is independent of hashing
  while (static_cast<int64_t>(order.size()) < c.drawn) {
    const uint64_t p = pos(rng);
    if (chosen.insert(p).second) order.push_back(p);
  }
  float* data = w.data_ptr<float>();
  std::vector<uint32_t> before(static_cast<size_t>(w.numel()));
  std::memcpy(before.data(), data, before.size() * sizeof(uint32_t));
  for (uint64_t p : order) {
    uint32_t bits;
    std::memcpy(&bits, data + p / 32, 4);
    bits ^= uint32_t{1} << (p % 32);
    std::memcpy(data + p / 32, &bits, 4);
    const uint64_t b = p % 32;
    if (b == 31) ++c.sign;
    else if (b >= 23) ++c.exponent;
    else ++c.mantissa;
  }
  for (size_t i = 0; i < before.size(); ++i) {
    uint32_t now;
    std::memcpy(&now, data + i, 4);
    c.flipped += std::popcount(now ^ before[i]);
    if (now != before[i] && !std::isfinite(data[i])) ++c.nonfinite;
  }
  return c;
}

DegradationResult ApplyDegradations(Decoder& model, const std::vector<std::string>& patterns,
                                    const DegradeConfig& cfg, const std::string& what) {
  CheckDegradeConfig(cfg);
  const auto layers = model->SelectLinears(patterns, what);
  for (const auto& k : cfg.kinds)
    if (k == "quant")
      for (const auto& [name, lin] : layers) CheckQuantConfig(cfg.quant, lin->InFeatures(), what + ": " + name);
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> original;
  for (const auto& [name, lin] : layers) original.push_back(lin->BaseWeight().detach().clone());

  DegradationResult out;
  nlohmann::json& rep = out.report;
  rep["kinds"] = cfg.kinds;
  rep["patterns"] = patterns;
  rep["seed"] = cfg.seed;
  rep["seed_rule"] = "splitmix64 of (seed, kind position, layer position)";
  std::vector<std::string> nonfinite_where;
  int64_t nonfinite_total = 0;
  for (size_t ki = 0; ki < cfg.kinds.size(); ++ki) {
    const std::string& kind = cfg.kinds[ki];
    nlohmann::json k;
    k["kind"] = kind;
    if (kind == "quant") {
      k["bits"] = cfg.quant.bits;
      k["group"] = cfg.quant.group;
      k["scheme"] = QuantSchemeName(cfg.quant.scheme);
    } else if (kind == "noise") {
      const bool rel = cfg.noise_l2 <= 0;
      k["target"] = rel ? "rel_l2" : "l2";
      k["value"] = rel ? (cfg.noise_rel_l2 > 0 ? cfg.noise_rel_l2 : kDefaultNoiseRelL2) : cfg.noise_l2;
      k["distribution"] = "Gaussian direction, scaled to the target Frobenius norm per layer";
    } else if (kind == "dtype") {
      const FloatFormat& f = FindFloatFormat(cfg.dtype, "--dtype");
      k["dtype"] = f.name;
      k["rounding"] = "nearest, ties to even; subnormals kept; saturating at the largest finite value";
      k["max_finite"] = f.max_finite;
    } else {
      k["rate"] = cfg.bitflip_rate;
      k["stored_dtype"] = "float32";
      k["count_rule"] = "Binomial(32 * weights, rate) distinct bit positions per layer";
    }
    int64_t kind_flipped = 0, kind_nonfinite = 0;
    for (size_t li = 0; li < layers.size(); ++li) {
      const auto& [name, lin] = layers[li];
      at::Tensor w = lin->BaseWeight();
      const at::Tensor before = w.detach().clone();
      const double w_norm = L2(before);
      nlohmann::json l;
      l["name"] = name;
      l["rows"] = w.size(0);
      l["cols"] = w.size(1);
      const uint64_t seed = DegradeSeed(cfg.seed, ki, li);
      if (kind == "quant") {
        w.copy_(FakeQuantize(w, cfg.quant, name));
      } else if (kind == "noise") {
        const double target = cfg.noise_l2 > 0 ? cfg.noise_l2 : k["value"].get<double>() * w_norm;
        l["target_l2"] = target;
        AddScaledNoise(w, target, seed);
        l["seed"] = seed;
      } else if (kind == "dtype") {
        const FloatFormat& f = FindFloatFormat(cfg.dtype, "--dtype");
        at::Tensor c = w.detach().to(at::kFloat).contiguous();
        float* p = c.data_ptr<float>();
        int64_t saturated = 0;
        for (int64_t i = 0; i < c.numel(); ++i) {
          if (std::fabs(static_cast<double>(p[i])) > f.max_finite) ++saturated;
          p[i] = RoundToFormat(p[i], f);
        }
        w.copy_(c);
        l["saturated"] = saturated;
      } else {
        at::Tensor c = w.detach().to(at::kFloat).contiguous();
        const BitflipCounts bc = FlipBits(c, cfg.bitflip_rate, seed);
        w.copy_(c);
        l["seed"] = seed;
        l["bits"] = w.numel() * 32;
        l["flips_drawn"] = bc.drawn;
        l["flipped_bits"] = bc.flipped;
        l["sign_flips"] = bc.sign;
        l["exponent_flips"] = bc.exponent;
        l["mantissa_flips"] = bc.mantissa;
        l["nonfinite_values"] = bc.nonfinite;
        kind_flipped += bc.flipped;
        kind_nonfinite += bc.nonfinite;
        if (bc.nonfinite > 0) nonfinite_where.push_back(fmt::format("{} ({})", name, bc.nonfinite));
      }
      const bool finite = at::isfinite(w).all().item<bool>();
      const double d = finite ? L2(w.detach() - before) : std::numeric_limits<double>::infinity();
      l["l2_norm_diff"] = finite ? nlohmann::json(d) : nlohmann::json(nullptr);
      l["rel_l2"] = finite ? nlohmann::json(d / std::max(w_norm, 1e-30)) : nlohmann::json(nullptr);
      if (kind == "quant") {
        LayerQuantReport q;
        q.name = name;
        q.rows = w.size(0);
        q.cols = w.size(1);
        q.rel_error = d / std::max(w_norm, 1e-30);
        out.quantized.push_back(q);
      }
      k["layers"].push_back(l);
    }
    if (kind == "bitflip") {
      k["flipped_bits_total"] = kind_flipped;
      k["nonfinite_values_total"] = kind_nonfinite;
      nonfinite_total += kind_nonfinite;
    }
    k["position"] = ki;
    rep[kind] = k;
  }
  // The combined change of every layer, and the paper's Table 1 figure.
  for (size_t li = 0; li < layers.size(); ++li) {
    const at::Tensor w = layers[li].second->BaseWeight().detach();
    const bool finite = at::isfinite(w).all().item<bool>();
    const double d = finite ? L2(w - original[li]) : std::numeric_limits<double>::infinity();
    const double n = L2(original[li]);
    rep["total"].push_back({{"name", layers[li].first},
                            {"l2_norm_diff", finite ? nlohmann::json(d) : nlohmann::json(nullptr)},
                            {"rel_l2", finite ? nlohmann::json(d / std::max(n, 1e-30)) : nlohmann::json(nullptr)}});
    const std::string& name = layers[li].first;
    if (!rep.contains("first_k_proj_l2_norm_diff") && name.size() >= 6 &&
        name.compare(name.size() - 6, 6, "k_proj") == 0) {
      rep["first_k_proj"] = name;
      rep["first_k_proj_l2_norm_diff"] = finite ? nlohmann::json(d) : nlohmann::json(nullptr);
    }
  }
  if (nonfinite_total > 0) {
    throw MakeConfigError("--bitflip-rate", "bitflip_rate",
                          fmt::format("the bit flips turned {} weights into NaN or inf (exponent flips) in {}",
                                      nonfinite_total, fmt::join(nonfinite_where, ", ")),
                          "a degradation that leaves the weights finite (metrics of a model with NaN or inf "
                          "weights mean nothing)",
                          "lower --bitflip-rate or change --seed; the flipped-bit counts are exact either way");
  }
  return out;
}

}  // namespace lifeline::recovery
