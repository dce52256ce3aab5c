#include <cmath>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "recovery/model/decoder.hpp"
#include "recovery/quant/packed.hpp"
#include "recovery/quant/rtn.hpp"
#include "common/error.hpp"
#include "roofline/spec/quant_plan.hpp"
#include "test_util.hpp"

namespace lifeline::recovery {
namespace {

// METHOD.md §2.1 written out per group, with the BF16-rounded scale.
at::Tensor NaiveAsymQdq(const at::Tensor& w, int bits, int64_t g) {
  at::Tensor out = at::empty_like(w);
  const double qmax = (1 << bits) - 1;
  for (int64_t r = 0; r < w.size(0); ++r) {
    for (int64_t c0 = 0; c0 < w.size(1); c0 += g) {
      const at::Tensor grp = w[r].narrow(0, c0, g);
      const double mn = grp.min().item<double>(), mx = grp.max().item<double>();
      const double scale =
          at::tensor({static_cast<float>((mx - mn) / qmax)}).to(at::kBFloat16).item<float>();
      const double zero = std::clamp(std::nearbyint(-mn / scale), 0.0, qmax);
      for (int64_t c = c0; c < c0 + g; ++c) {
        const double q = std::clamp(std::nearbyint(w[r][c].item<float>() / static_cast<float>(scale)) + zero, 0.0, qmax);
        out[r][c] = static_cast<float>((q - zero) * scale);
      }
    }
  }
  return out;
}

TEST(Quant, AsymmetricRtnMatchesFormula) {
  at::manual_seed(0);
  const at::Tensor w = at::randn({6, 64});
  for (int bits : {2, 3, 4}) {
    const at::Tensor got = FakeQuantize(w, {bits, 32, QuantScheme::kAsymmetric});
    const at::Tensor ref = NaiveAsymQdq(w, bits, 32);
    const double diff = (got - ref).abs().max().item<double>();
    EXPECT_LT(diff, 1e-6) << "bits " << bits;
    // At most 2^b distinct values per group.
    EXPECT_LE(std::get<0>(at::_unique(got[0].narrow(0, 0, 32))).numel(), 1 << bits);
  }
}

TEST(Quant, SymmetricUsesSignedGrid) {
  at::manual_seed(1);
  const at::Tensor w = at::randn({4, 32});
  const QuantConfig cfg{4, 16, QuantScheme::kSymmetric};
  const auto q = QuantizeRtn(w, cfg);
  EXPECT_TRUE((q.zero == 8).all().item<bool>());
  const at::Tensor wq = Dequantize(q, 16);
  // the largest magnitude of each group is reproduced up to BF16 scale rounding
  const at::Tensor amax = std::get<0>(w.abs().reshape({4, 2, 16}).max(-1));
  const at::Tensor qmax = std::get<0>(wq.abs().reshape({4, 2, 16}).max(-1));
  EXPECT_LT(((amax - qmax).abs() / amax).max().item<double>(), 1e-2);
  EXPECT_LT((w - wq).abs().max().item<double>(), (amax / 7).max().item<double>() / 2 + 1e-6);
}

TEST(Quant, PackedRoundTripIsExactAndSizeMatchesRoofline) {
  at::manual_seed(2);
  const at::Tensor w = at::randn({172, 64}) * 0.1;
  for (int bits : {2, 3, 4}) {
    for (int64_t g : {16, 32, 64}) {
      for (auto scheme : {QuantScheme::kAsymmetric, QuantScheme::kSymmetric}) {
        const QuantConfig cfg{bits, g, scheme};
        const PackedWeight p = PackWeight(w, cfg);
        EXPECT_TRUE(at::equal(UnpackWeight(p), FakeQuantize(w, cfg)))
            << "bits " << bits << " g " << g;
        EXPECT_EQ(p.Bytes(), PackedWeightBytes(172, 64, cfg));
        WeightFormat f;
        f.bits = bits;
        f.group_size = g;
        f.metadata = scheme == QuantScheme::kAsymmetric ? QuantMetadata::kScaleBf16ZeroPacked
                                                        : QuantMetadata::kScaleBf16;
        const double n = 172.0 * 64.0;
        const double roofline = f.ValueBytes(n) + f.MetadataBytes(n);
        const int64_t groups = 172 * 64 / g;
        if ((groups * bits) % 8 == 0) {
          EXPECT_DOUBLE_EQ(static_cast<double>(p.Bytes()), roofline) << "bits " << bits << " g " << g;
        } else {  // the only difference: the zero-point stream rounds up to whole bytes
          EXPECT_EQ(static_cast<double>(p.Bytes()), std::ceil(roofline)) << "bits " << bits << " g " << g;
        }
      }
    }
  }
  // The roofline's weight-bytes formula (roofline/README.md, "Terms"): n*b/8 + n_groups*(2 + b/8).
  EXPECT_EQ(PackedWeightBytes(172, 64, 2, 32), 172 * 64 * 2 / 8 + (172 * 64 / 32) * (2 * 8 + 2) / 8);
}

TEST(Quant, BitPackingIsDense) {
  std::vector<uint8_t> v = {1, 2, 3, 4, 5, 6, 7, 0, 7, 7, 1};
  const auto p = PackBits(v.data(), 11, 3);
  EXPECT_EQ(p.size(), 5u);  // ceil(33 / 8)
  EXPECT_EQ(UnpackBits(p, 11, 3), v);
}

TEST(Quant, BadConfigsAreConfigErrors) {
  const at::Tensor w = at::randn({8, 172});
  try {
    FakeQuantize(w, {2, 32, QuantScheme::kAsymmetric}, "model.layers.0.mlp.down_proj");
    FAIL();
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("does not divide the input dimension 172"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.layers.0.mlp.down_proj"), std::string::npos) << msg;
  }
  EXPECT_THROW(FakeQuantize(w, {5, 4, QuantScheme::kAsymmetric}), ConfigError);
  EXPECT_THROW(ParseQuantScheme("float", "--scheme"), ConfigError);
}

TEST(Quant, FakeQuantizeGateUpOfStories260k) {
  LIFELINE_REQUIRE_STORIES260K();
  const Checkpoint ck = LoadLlama2cCheckpoint(Stories260kModelPath());
  Decoder model = BuildDecoder(ck);
  const auto report =
      FakeQuantizeLayers(model, {"mlp.gate_proj", "mlp.up_proj"}, {2, 32, QuantScheme::kAsymmetric});
  ASSERT_EQ(report.size(), 10u);
  for (const auto& r : report) {
    EXPECT_GT(r.rel_error, 0.1) << r.name;  // INT2 is coarse
    EXPECT_LT(r.rel_error, 0.8) << r.name;
  }
  std::map<std::string, at::Tensor> params;
  for (const auto& item : model->named_parameters()) params[item.key()] = item.value();
  EXPECT_FALSE(at::equal(params.at("model.layers.2.mlp.up_proj.weight"),
                         ck.tensors.at("model.layers.2.mlp.up_proj.weight")));
  EXPECT_TRUE(at::equal(params.at("model.layers.2.mlp.down_proj.weight"),
                        ck.tensors.at("model.layers.2.mlp.down_proj.weight")));
  // down_proj's input dimension is 172: g32 does not divide it.
  EXPECT_THROW(FakeQuantizeLayers(model, {"mlp.down_proj"}, {2, 32, QuantScheme::kAsymmetric}),
               ConfigError);
  EXPECT_THROW(FakeQuantizeLayers(model, {"mlp.gate"}, {2, 32, QuantScheme::kAsymmetric}),
               ConfigError);
}

}  // namespace
}  // namespace lifeline::recovery
