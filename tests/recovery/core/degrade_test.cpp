// Degradations: each measured error equals its definition.
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "common/error.hpp"
#include "recovery/degrade/degrade.hpp"
#include "recovery/degrade/float_format.hpp"
#include "tests/recovery/core/tiny_model.hpp"

namespace lifeline::recovery {
namespace {

using test::TinyArch;

Decoder TinyModel(uint64_t seed) {
  at::manual_seed(static_cast<int64_t>(seed));
  Decoder m(TinyArch(), false);
  torch::NoGradGuard g;
  for (auto& t : m->parameters()) t.normal_(0, 0.3);
  return m;
}

std::map<std::string, at::Tensor> Weights(const Decoder& m) {
  std::map<std::string, at::Tensor> w;
  for (const auto& [name, lin] : m->Linears()) w[name] = lin->BaseWeight().detach().clone();
  return w;
}

double L2(const at::Tensor& t) { return t.to(at::kDouble).norm().item<double>(); }

struct Case {
  const char* format;
  double in, out;
};

TEST(FloatFormat, RoundTripsMatchAHandComputedTable) {
  const double inf = std::numeric_limits<double>::infinity();
  const Case cases[] = {
      // fp16: 10 fraction bits, max 65504, smallest subnormal 2^-24.
      {"fp16", 1.0, 1.0},
      {"fp16", 0.1, 0.0999755859375},
      {"fp16", 1 + std::ldexp(1, -11), 1.0},                           // tie -> even (1.0)
      {"fp16", 1 + 3 * std::ldexp(1, -11), 1 + std::ldexp(1, -9)},     // tie -> even (...10)
      {"fp16", 65504, 65504},
      {"fp16", 65519, 65504},
      {"fp16", 65520, 65504},                                          // IEEE rounds to inf; saturated
      {"fp16", 70000, 65504},
      {"fp16", -70000, -65504},
      {"fp16", inf, 65504},
      {"fp16", std::ldexp(1, -24), std::ldexp(1, -24)},                // smallest subnormal
      {"fp16", std::ldexp(1, -25), 0.0},                               // tie between 0 and 2^-24 -> 0
      {"fp16", 3 * std::ldexp(1, -26), std::ldexp(1, -24)},
      {"fp16", 1.5 * std::ldexp(1, -24), std::ldexp(1, -23)},          // subnormal tie -> even
      // bf16: 7 fraction bits, float's exponent range.
      {"bf16", 3.14159265358979, 3.140625},
      {"bf16", 1 + std::ldexp(1, -8), 1.0},
      {"bf16", 1 + 3 * std::ldexp(1, -8), 1 + std::ldexp(1, -6)},
      {"bf16", 3.39e38, 3.3895313892515355e38},                        // saturated to the largest finite
      {"bf16", -1e-40, -std::ldexp(1, -133)},                          // float subnormal, bf16 spacing 2^-133
      // fp8 E4M3 (fn): 3 fraction bits, bias 7, max 448, no inf, smallest subnormal 2^-9.
      {"fp8-e4m3", 0.1, 0.1015625},
      {"fp8-e4m3", 1.0625, 1.0},                                       // tie -> even
      {"fp8-e4m3", 1.1875, 1.25},                                      // tie -> even
      {"fp8-e4m3", 240, 240},
      {"fp8-e4m3", 448, 448},
      {"fp8-e4m3", 460, 448},
      {"fp8-e4m3", 470, 448},                                          // would round to 480 (NaN code): saturated
      {"fp8-e4m3", -1000, -448},
      {"fp8-e4m3", std::ldexp(1, -9), std::ldexp(1, -9)},
      {"fp8-e4m3", std::ldexp(1, -10), 0.0},                           // tie -> 0
      {"fp8-e4m3", 1.5 * std::ldexp(1, -9), std::ldexp(1, -8)},        // subnormal tie -> even
      {"fp8-e4m3", 0.013671875, 0.013671875},                          // 7 * 2^-9, largest subnormal
      // fp8 E5M2: 2 fraction bits, bias 15, max 57344, smallest subnormal 2^-16.
      {"fp8-e5m2", 0.1, 0.09375},
      {"fp8-e5m2", 1.125, 1.0},
      {"fp8-e5m2", 1.375, 1.5},
      {"fp8-e5m2", 57344, 57344},
      {"fp8-e5m2", 61440, 57344},                                      // tie with inf: saturated
      {"fp8-e5m2", 1e6, 57344},
      {"fp8-e5m2", std::ldexp(1, -16), std::ldexp(1, -16)},
      {"fp8-e5m2", 3 * std::ldexp(1, -18), std::ldexp(1, -16)},
  };
  for (const Case& c : cases) {
    const FloatFormat& f = FindFloatFormat(c.format, "test");
    const float got = RoundToFormat(static_cast<float>(c.in), f);
    EXPECT_EQ(got, static_cast<float>(c.out)) << c.format << " " << c.in;
  }
  const FloatFormat& e4 = FindFloatFormat("fp8-e4m3", "test");
  EXPECT_TRUE(std::isnan(RoundToFormat(std::numeric_limits<float>::quiet_NaN(), e4)));
  EXPECT_TRUE(std::signbit(RoundToFormat(-0.0f, e4)));
  EXPECT_DOUBLE_EQ(e4.min_subnormal(), std::ldexp(1, -9));
  EXPECT_THROW(FindFloatFormat("fp4", "--dtype"), ConfigError);
}

TEST(FloatFormat, Fp16AndBf16AgreeWithTorchConversionInRange) {
  const at::Tensor x = at::randn({4096}) * 100;
  for (const auto& [name, dt] : {std::pair{"fp16", at::kHalf}, std::pair{"bf16", at::kBFloat16}}) {
    const at::Tensor ref = x.to(dt).to(at::kFloat);
    const FloatFormat& f = FindFloatFormat(name, "test");
    for (int64_t i = 0; i < x.numel(); ++i)
      ASSERT_EQ(RoundToFormat(x[i].item<float>(), f), ref[i].item<float>()) << name << " " << x[i].item<float>();
  }
}

TEST(Degrade, NoiseL2NormEqualsTheTarget) {
  Decoder m = TinyModel(1);
  const auto before = Weights(m);
  DegradeConfig cfg;
  cfg.kinds = {"noise"};
  cfg.noise_rel_l2 = 0.05;
  cfg.seed = 7;
  const auto res = ApplyDegradations(m, {"self_attn.k_proj", "self_attn.v_proj"}, cfg);
  const auto after = Weights(m);
  const auto& layers = res.report["noise"]["layers"];
  ASSERT_EQ(layers.size(), 4u);
  for (const auto& l : layers) {
    const std::string name = l["name"];
    const double measured = L2(after.at(name) - before.at(name));
    EXPECT_NEAR(measured / (0.05 * L2(before.at(name))), 1.0, 1e-5) << name;
    EXPECT_NEAR(l["l2_norm_diff"].get<double>() / measured, 1.0, 1e-9) << name;
    EXPECT_NEAR(l["rel_l2"].get<double>(), 0.05, 0.05 * 1e-5) << name;
  }
  EXPECT_EQ(res.report["first_k_proj"], "model.layers.0.self_attn.k_proj");
  EXPECT_NEAR(res.report["first_k_proj_l2_norm_diff"].get<double>(),
              L2(after.at("model.layers.0.self_attn.k_proj") - before.at("model.layers.0.self_attn.k_proj")), 1e-9);
  // Untouched layers stay bit-identical.
  EXPECT_TRUE(at::equal(after.at("model.layers.0.mlp.up_proj"), before.at("model.layers.0.mlp.up_proj")));
  // Absolute target; same seed -> same weights, other seed -> others.
  Decoder a = TinyModel(1), b = TinyModel(1), c = TinyModel(1);
  cfg.noise_rel_l2 = 0;
  cfg.noise_l2 = 0.25;
  ApplyDegradations(a, {"self_attn.k_proj"}, cfg);
  ApplyDegradations(b, {"self_attn.k_proj"}, cfg);
  cfg.seed = 8;
  ApplyDegradations(c, {"self_attn.k_proj"}, cfg);
  const std::string k0 = "model.layers.0.self_attn.k_proj";
  EXPECT_NEAR(L2(Weights(a).at(k0) - before.at(k0)), 0.25, 0.25 * 1e-5);
  EXPECT_TRUE(at::equal(Weights(a).at(k0), Weights(b).at(k0)));
  EXPECT_FALSE(at::equal(Weights(a).at(k0), Weights(c).at(k0)));
}

TEST(Degrade, BitflipCountIsExactPopcount) {
  at::Tensor w = at::randn({64, 32});
  const at::Tensor before = w.clone();
  const BitflipCounts c = FlipBits(w, 1e-3, 42);
  int64_t popcount = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    uint32_t x, y;
    const float a = before.data_ptr<float>()[i], b = w.data_ptr<float>()[i];
    std::memcpy(&x, &a, 4);
    std::memcpy(&y, &b, 4);
    popcount += std::popcount(x ^ y);
  }
  EXPECT_EQ(c.flipped, popcount);
  EXPECT_EQ(c.drawn, popcount);  // distinct positions: every draw flips one bit
  EXPECT_EQ(c.sign + c.exponent + c.mantissa, c.drawn);
  EXPECT_GT(c.drawn, 20);   // Binomial(65536, 1e-3): mean 65.5, sd 8.1
  EXPECT_LT(c.drawn, 120);
  // Through ApplyDegradations: the report's counts are the popcounts.
  Decoder m = TinyModel(2);
  const auto wb = Weights(m);
  DegradeConfig cfg;
  cfg.kinds = {"bitflip"};
  cfg.bitflip_rate = 2e-4;
  cfg.seed = 3;
  const auto res = ApplyDegradations(m, {"mlp.down_proj"}, cfg);
  const auto wa = Weights(m);
  int64_t total = 0;
  for (const auto& l : res.report["bitflip"]["layers"]) {
    const std::string name = l["name"];
    int64_t pc = 0;
    const at::Tensor x = wb.at(name).contiguous(), y = wa.at(name).contiguous();
    for (int64_t i = 0; i < x.numel(); ++i) {
      uint32_t p, q;
      std::memcpy(&p, x.data_ptr<float>() + i, 4);
      std::memcpy(&q, y.data_ptr<float>() + i, 4);
      pc += std::popcount(p ^ q);
    }
    EXPECT_EQ(l["flipped_bits"].get<int64_t>(), pc) << name;
    total += pc;
  }
  EXPECT_EQ(res.report["bitflip"]["flipped_bits_total"].get<int64_t>(), total);
}

TEST(Degrade, BitflipsThatMakeNaNOrInfAreCountedAndRefused) {
  // 1.5f = 0x3FC00000: flipping bit 30 gives an all-ones exponent (NaN).
  Decoder m = TinyModel(3);
  {
    torch::NoGradGuard g;
    for (const auto& [name, lin] : m->SelectLinears({"mlp.gate_proj"}, "test")) lin->BaseWeight().fill_(1.5);
  }
  DegradeConfig cfg;
  cfg.kinds = {"bitflip"};
  cfg.bitflip_rate = 0.05;
  try {
    ApplyDegradations(m, {"mlp.gate_proj"}, cfg);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("NaN or inf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--bitflip-rate"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.layers.0.mlp.gate_proj"), std::string::npos) << msg;
  }
}

TEST(Degrade, DtypeRoundTripSaturatesAndComposesInOrder) {
  Decoder m = TinyModel(4);
  {
    torch::NoGradGuard g;
    for (const auto& [name, lin] : m->SelectLinears({"mlp.up_proj"}, "test")) lin->BaseWeight().mul_(2000);
  }
  const auto before = Weights(m);
  DegradeConfig cfg;
  cfg.kinds = {"dtype"};
  cfg.dtype = "fp8-e4m3";
  const auto res = ApplyDegradations(m, {"mlp.up_proj"}, cfg);
  const auto after = Weights(m);
  const FloatFormat& f = FindFloatFormat("fp8-e4m3", "test");
  for (const auto& l : res.report["dtype"]["layers"]) {
    const std::string name = l["name"];
    const at::Tensor x = before.at(name).contiguous(), y = after.at(name).contiguous();
    int64_t saturated = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      const float v = x.data_ptr<float>()[i];
      ASSERT_EQ(y.data_ptr<float>()[i], RoundToFormat(v, f));
      saturated += std::fabs(v) > 448;
    }
    EXPECT_GT(saturated, 0);
    EXPECT_EQ(l["saturated"].get<int64_t>(), saturated);
    EXPECT_NEAR(l["l2_norm_diff"].get<double>(), L2(y - x), 1e-6 * L2(y - x));
  }
  // quant after noise: the result is on the grid; the total is measured end to end.
  Decoder q = TinyModel(5);
  const auto qb = Weights(q);
  cfg.kinds = {"noise", "quant"};
  cfg.noise_rel_l2 = 0.1;
  const auto qr = ApplyDegradations(q, {"self_attn.k_proj"}, cfg);
  const std::string k0 = "model.layers.0.self_attn.k_proj";
  const at::Tensor wq = Weights(q).at(k0);
  EXPECT_TRUE(at::equal(FakeQuantize(wq, cfg.quant), wq));
  EXPECT_EQ(qr.quantized.size(), 2u);
  EXPECT_NEAR(qr.report["first_k_proj_l2_norm_diff"].get<double>(), L2(wq - qb.at(k0)), 1e-9);
  EXPECT_EQ(qr.report["kinds"], (nlohmann::json{"noise", "quant"}));
  EXPECT_EQ(qr.report["noise"]["position"], 0);
  EXPECT_EQ(qr.report["quant"]["position"], 1);
}

TEST(Degrade, BadSettingsAreConfigErrors) {
  Decoder m = TinyModel(6);
  DegradeConfig cfg;
  cfg.kinds = {"blur"};
  EXPECT_THROW(ApplyDegradations(m, {"mlp.up_proj"}, cfg), ConfigError);
  cfg.kinds = {"noise", "noise"};
  EXPECT_THROW(ApplyDegradations(m, {"mlp.up_proj"}, cfg), ConfigError);
  cfg.kinds = {"noise"};
  try {
    ApplyDegradations(m, {"self_attn.kv_proj"}, cfg, "--layers");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--layers"), std::string::npos) << e.what();
  }
  cfg.noise_rel_l2 = 0.1;
  cfg.noise_l2 = 1;
  EXPECT_THROW(ApplyDegradations(m, {"mlp.up_proj"}, cfg), ConfigError);
  cfg = DegradeConfig{};
  cfg.kinds = {"dtype"};
  cfg.dtype = "int8";
  EXPECT_THROW(ApplyDegradations(m, {"mlp.up_proj"}, cfg), ConfigError);
}

}  // namespace
}  // namespace lifeline::recovery
