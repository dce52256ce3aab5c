// GGUF writing: ggml block quantizers against hand-built blocks, the GGUF
// writer read back by the reader, random-weight determinism, and stories260K
// written from its llama2.c checkpoint.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "experiments/measure/ggml_quant.hpp"
#include "experiments/measure/gguf_model.hpp"
#include "experiments/measure/gguf_writer.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/yaml_util.hpp"
#include "tests/experiments/test_util.hpp"
#include "tests/require.hpp"

namespace lifeline::measure {
namespace {

namespace fs = std::filesystem;

using sweep::testing::TempDir;

// Whether a temporary of `name` (name.tmp...) is left in `dir`.
bool TemporaryLeft(const fs::path& dir, const std::string& name) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind(name + ".tmp", 0) == 0) return true;
  }
  return false;
}

std::vector<uint8_t> FileBytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::vector<float> Gaussian(size_t n, float std, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, std);
  std::vector<float> x(n);
  for (auto& v : x) v = d(gen);
  return x;
}

// The message of the ConfigError `f` throws (fails when it throws nothing or something else).
template <typename F>
std::string ConfigErrorOf(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a ConfigError, got: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected a ConfigError, nothing thrown";
  return "";
}

#define REQUIRE_SHARED(path) \
  LIFELINE_REQUIRE(fs::exists(path), "shared input " << (path) << " (set LIFELINE_SHARED_DIR)")

fs::path StoriesBin() { return SharedDir() / "models" / "stories260k" / "stories260K.bin"; }
fs::path StoriesTok() { return SharedDir() / "models" / "stories260k" / "tok512.bin"; }

// A small dense model whose sizes fit every block (k-quants need rows of 256).
ModelArch SmallArch(const std::string& model_type) {
  ModelArch a;
  a.name = "small-" + model_type;
  a.model_type = model_type;
  a.hidden_size = 256;
  a.intermediate_size = 512;
  a.num_hidden_layers = 2;
  a.num_attention_heads = 4;
  a.num_key_value_heads = 2;
  a.head_dim = 64;
  a.vocab_size = 300;
  a.max_position_embeddings = 1024;
  a.tie_word_embeddings = true;
  a.qk_norm = model_type == "qwen3";
  a.rms_norm_eps = 1e-6;
  a.rope_theta = 1e6;
  return a;
}

// ---------------------------------------------------------------- fp16

TEST(GgufQuant, Fp16Conversions) {
  EXPECT_EQ(Fp32ToFp16(1.0f), 0x3C00);
  EXPECT_EQ(Fp32ToFp16(-2.0f), 0xC000);
  EXPECT_EQ(Fp32ToFp16(0.5f), 0x3800);
  EXPECT_EQ(Fp32ToFp16(65504.0f), 0x7BFF);
  EXPECT_EQ(Fp32ToFp16(1e6f), 0x7C00);              // overflow: inf, as ggml
  EXPECT_EQ(Fp32ToFp16Finite(1e6f), 0x7BFF);        // scales are clamped instead
  EXPECT_EQ(Fp32ToFp16Finite(-INFINITY), 0xFBFF);
  EXPECT_EQ(Fp32ToFp16Finite(NAN), 0x0000);
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -25)), 0x0000);  // a tie rounds to even (zero)
  EXPECT_EQ(Fp32ToFp16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie between 1 and 1+2^-10: even
  EXPECT_EQ(Fp32ToFp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  // An F16 row (vectorized where the CPU has F16C) is Fp32ToFp16Finite on each value.
  std::vector<float> row = {NAN, INFINITY, -INFINITY, 1e6f, -1e6f, 65504.0f, 65519.0f, -0.0f,
                            std::ldexp(1.0f, -25), std::ldexp(3.0f, -26), 1.0f + std::ldexp(1.0f, -11)};
  std::mt19937 gen(11);
  while (row.size() < 1003) row.push_back(std::bit_cast<float>(static_cast<uint32_t>(gen())));
  const std::vector<uint8_t> h = QuantizeRow(GgmlType::kF16, row);
  for (size_t i = 0; i < row.size(); ++i) {
    uint16_t got;
    std::memcpy(&got, h.data() + 2 * i, 2);
    ASSERT_EQ(got, Fp32ToFp16Finite(row[i])) << i << " " << row[i];
  }
  // Every finite half survives half -> float -> half.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00) continue;  // inf / NaN
    ASSERT_EQ(Fp32ToFp16(Fp16ToFp32(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

// ---------------------------------------------------------------- blocks

TEST(GgufQuant, BlockBytesEqualGgmlRowBytes) {
  const std::vector<float> x = Gaussian(512, 0.02f, 1);
  for (const auto& l : GgmlLayouts()) {
    EXPECT_EQ(static_cast<int64_t>(QuantizeRow(l.type, x).size()), GgmlRowBytes(l.type, 512)) << l.name;
  }
  EXPECT_EQ(static_cast<int64_t>(sizeof(BlockQ4_0)), GgmlLayout(GgmlType::kQ4_0).block_bytes);
  EXPECT_EQ(static_cast<int64_t>(sizeof(BlockQ8_0)), GgmlLayout(GgmlType::kQ8_0).block_bytes);
  EXPECT_EQ(static_cast<int64_t>(sizeof(BlockQ2_K)), GgmlLayout(GgmlType::kQ2_K).block_bytes);
  EXPECT_EQ(static_cast<int64_t>(sizeof(BlockQ3_K)), GgmlLayout(GgmlType::kQ3_K).block_bytes);
  EXPECT_EQ(static_cast<int64_t>(sizeof(BlockQ4_K)), GgmlLayout(GgmlType::kQ4_K).block_bytes);
  EXPECT_THROW(QuantizeRow(GgmlType::kQ2_K, x.data(), 172, nullptr), std::invalid_argument);
}

TEST(GgufQuant, RoundTripErrorIsSmall) {
  // Relative RMS error of dequantize(quantize(x)) on Gaussian weights; bounds
  // ~1.5x what these round-to-nearest quantizers give (Q2_K ~0.30, Q4_0 ~0.10).
  const std::vector<float> x = Gaussian(8192, 0.02f, 7);
  const std::vector<std::pair<GgmlType, double>> bounds = {
      {GgmlType::kF32, 0.0},     {GgmlType::kF16, 1e-3},   {GgmlType::kQ8_0, 0.01}, {GgmlType::kQ4_0, 0.15},
      {GgmlType::kQ4_K, 0.15},   {GgmlType::kQ3_K, 0.30},  {GgmlType::kQ2_K, 0.50}};
  double rms = 0;
  for (float v : x) rms += v * v;
  rms = std::sqrt(rms / x.size());
  for (const auto& [t, bound] : bounds) {
    const std::vector<uint8_t> q = QuantizeRow(t, x);
    const std::vector<float> y = DequantizeRow(t, q, static_cast<int64_t>(x.size()));
    double err = 0;
    for (size_t i = 0; i < x.size(); ++i) err += (x[i] - y[i]) * (x[i] - y[i]);
    const double rel = std::sqrt(err / x.size()) / rms;
    std::printf("  %-5s relative RMS error %.4f (bound %.4f)\n", GgmlLayout(t).name, rel, bound);
    EXPECT_LE(rel, bound) << GgmlLayout(t).name;
  }
}

TEST(GgufQuant, ZeroAndExtremeRowsKeepFiniteScales) {
  std::vector<float> zeros(256, 0.0f), huge(256);
  for (size_t i = 0; i < huge.size(); ++i) huge[i] = (i % 2 ? 1.0f : -1.0f) * 1e9f;
  for (const auto& l : GgmlLayouts()) {
    if (l.type == GgmlType::kF32) continue;
    for (const auto* x : {&zeros, &huge}) {
      const auto q = QuantizeRow(l.type, *x);
      for (float v : DequantizeRow(l.type, q, 256)) ASSERT_TRUE(std::isfinite(v)) << l.name;
    }
    for (float v : DequantizeRow(l.type, QuantizeRow(l.type, zeros), 256)) EXPECT_EQ(v, 0.0f) << l.name;
  }
}

TEST(GgufQuant, HandBuiltQ4_0) {
  BlockQ4_0 b{};
  b.d = 0x3800;  // 0.5
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  std::vector<float> y(32);
  DequantizeRow(GgmlType::kQ4_0, reinterpret_cast<const uint8_t*>(&b), 32, y.data());
  EXPECT_FLOAT_EQ(y[0], -4.0f);    // (0 - 8) * 0.5
  EXPECT_FLOAT_EQ(y[8], 0.0f);     // (8 - 8) * 0.5
  EXPECT_FLOAT_EQ(y[15], 3.5f);    // (15 - 8) * 0.5
  EXPECT_FLOAT_EQ(y[16], 3.5f);    // high nibble of qs[0]: 15
  EXPECT_FLOAT_EQ(y[31], -4.0f);   // high nibble of qs[15]: 0
  // Values on the grid come back exactly: -8d .. 7d with d = 0.25.
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[i] = 0.25f * static_cast<float>((i % 16) - 8);
  const auto q = QuantizeRow(GgmlType::kQ4_0, x);
  BlockQ4_0 got;
  std::memcpy(&got, q.data(), sizeof(got));
  EXPECT_EQ(got.d, Fp32ToFp16(0.25f));
  EXPECT_EQ(got.qs[0], 0x00);  // x[0] = -2 -> 0, x[16] = -2 -> 0
  EXPECT_EQ(DequantizeRow(GgmlType::kQ4_0, q, 32), x);
}

TEST(GgufQuant, HandBuiltQ8_0) {
  BlockQ8_0 b{};
  b.d = 0x3400;  // 0.25
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j * 8 - 127);
  std::vector<float> y(32);
  DequantizeRow(GgmlType::kQ8_0, reinterpret_cast<const uint8_t*>(&b), 32, y.data());
  EXPECT_FLOAT_EQ(y[0], -31.75f);
  EXPECT_FLOAT_EQ(y[31], (31 * 8 - 127) * 0.25f);
  const std::vector<float> x = {1.27f, -1.27f, 0.0f, 0.01f};
  std::vector<float> row(32, 0.0f);
  std::copy(x.begin(), x.end(), row.begin());
  const auto q = QuantizeRow(GgmlType::kQ8_0, row);
  BlockQ8_0 got;
  std::memcpy(&got, q.data(), sizeof(got));
  EXPECT_EQ(got.qs[0], 127);
  EXPECT_EQ(got.qs[1], -127);
  EXPECT_EQ(got.qs[3], 1);
}

TEST(GgufQuant, HandBuiltQ2_K) {
  // Scale of sub-block s (16 weights) = s, min = 15 - s; d = 1, dmin = 0.5;
  // every qs byte 0b11100100 gives weight e the value (e % 128) / 32.
  BlockQ2_K b{};
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<uint8_t>(s | ((15 - s) << 4));
  std::memset(b.qs, 0xE4, sizeof(b.qs));
  b.d = 0x3C00;
  b.dmin = 0x3800;
  std::vector<float> y(256);
  DequantizeRow(GgmlType::kQ2_K, reinterpret_cast<const uint8_t*>(&b), 256, y.data());
  for (int e = 0; e < 256; ++e) {
    const int s = e / 16, q = (e % 128) / 32;
    ASSERT_FLOAT_EQ(y[e], 1.0f * s * q - 0.5f * (15 - s)) << e;
  }
  EXPECT_FLOAT_EQ(y[0], -7.5f);
  EXPECT_FLOAT_EQ(y[40], -4.5f);   // s 2, q 1: 2 - 6.5
  EXPECT_FLOAT_EQ(y[200], 22.5f);  // s 12, q 2: 24 - 1.5
}

TEST(GgufQuant, HandBuiltQ3_K) {
  BlockQ3_K b{};
  b.d = 0x3C00;  // 1
  // Sub-block 9 stores 45 (scale 45 - 32 = 13): low nibble in the high half of
  // scales[1], high two bits (2) at bits 4-5 of scales[9].
  b.scales[1] = 0xD0;
  b.scales[9] = 0x20;
  EXPECT_EQ(Q3KScale(b.scales, 9), 45);
  EXPECT_EQ(Q3KScale(b.scales, 0), 0);
  // Weight 150 (sub-block 9): low bits at qs[32 + 22] bits 0-1, high bit 4 of hmask[22].
  b.qs[54] = 0x03;
  b.hmask[22] = 0x10;
  std::vector<float> y(256);
  DequantizeRow(GgmlType::kQ3_K, reinterpret_cast<const uint8_t*>(&b), 256, y.data());
  EXPECT_FLOAT_EQ(y[150], 39.0f);   // 13 * (3 - 0)
  EXPECT_FLOAT_EQ(y[151], -52.0f);  // 13 * (0 - 4)
  EXPECT_FLOAT_EQ(y[0], 128.0f);    // (0 - 32) * (0 - 4)
}

TEST(GgufQuant, HandBuiltQ4_K) {
  BlockQ4_K b{};
  b.d = 0x3C00;     // 1
  b.dmin = 0x3800;  // 0.5
  b.scales[1] = 7;   // sub-block 1: scale 7
  b.scales[5] = 3;   // sub-block 1: min 3
  // Sub-block 4: scale 33, min 50 (low nibbles in scales[8], high bits on top of scales[0] / scales[4]).
  b.scales[8] = 0x21;
  b.scales[0] |= 0x80;
  b.scales[4] |= 0xC0;
  uint8_t sc, m;
  Q4KScaleMin(b.scales, 4, &sc, &m);
  EXPECT_EQ(sc, 33);
  EXPECT_EQ(m, 50);
  Q4KScaleMin(b.scales, 0, &sc, &m);
  EXPECT_EQ(sc, 0);  // the top bits of scales[0] belong to sub-block 4
  EXPECT_EQ(m, 0);
  b.qs[64 + 5] = 0x0A;  // weight 128 + 5 (sub-block 4, low nibble of chunk 2): q = 10
  b.qs[7] = 0x90;       // weight 32 + 7 (sub-block 1, high nibble of chunk 0): q = 9
  std::vector<float> y(256);
  DequantizeRow(GgmlType::kQ4_K, reinterpret_cast<const uint8_t*>(&b), 256, y.data());
  EXPECT_FLOAT_EQ(y[133], 33.0f * 10 - 25.0f);
  EXPECT_FLOAT_EQ(y[132], -25.0f);
  EXPECT_FLOAT_EQ(y[39], 7.0f * 9 - 1.5f);
  EXPECT_FLOAT_EQ(y[0], 0.0f);
}

// ---------------------------------------------------------------- writer / reader

TEST(GgufWriter, ReadBackMetadataShapesAndOffsets) {
  TempDir dir("writer");
  const fs::path path = dir / "t.gguf";
  std::vector<GgufKv> kvs = {
      {"general.architecture", GgufValue::Str("llama")},
      {"test.u32", GgufValue::U32(4000000000u)},
      {"test.i32", GgufValue::I32(-7)},
      {"test.f32", GgufValue::F32(0.125f)},
      {"test.bool", GgufValue::Bool(true)},
      {"test.strs", GgufValue::StrArray({"a", "", "\xE2\x96\x81hello"})},
      {"test.floats", GgufValue::F32Array({1.5f, -2.0f})},
      {"test.ints", GgufValue::I32Array({3, -4, 5})},
  };
  std::vector<GgufTensorInfo> tensors = {
      {"a.weight", {5}, GgmlType::kF32, 0},
      {"b.weight", {64, 3}, GgmlType::kQ4_0, 0},
      {"c.weight", {256, 2}, GgmlType::kQ2_K, 0},
      {"d.weight", {8, 3}, GgmlType::kF16, 0},
  };
  auto pattern = [](size_t i, int64_t k) { return static_cast<uint8_t>(17 * i + k); };
  const GgufLayoutInfo layout = WriteGguf(path, kvs, tensors, [&](size_t i, const GgufTensorInfo& t, const GgufWriteFn& w) {
    std::vector<uint8_t> b(static_cast<size_t>(t.Bytes()));
    for (size_t k = 0; k < b.size(); ++k) b[k] = pattern(i, static_cast<int64_t>(k));
    w(std::span<const uint8_t>(b).first(3));  // in two pieces
    w(std::span<const uint8_t>(b).subspan(3));
  });
  EXPECT_FALSE(TemporaryLeft(dir.path(), "t.gguf"));
  const GgufFile f = ReadGguf(path);
  EXPECT_EQ(f.version, 3u);
  EXPECT_EQ(f.alignment, 32u);
  ASSERT_EQ(f.kvs.size(), kvs.size() + 1);  // + general.alignment
  EXPECT_EQ(f.GetString("general.architecture"), "llama");
  EXPECT_EQ(f.GetInt("general.alignment"), 32);
  EXPECT_EQ(f.Find("general.alignment")->type, GgufValueType::kUint32);
  EXPECT_EQ(f.GetInt("test.u32"), 4000000000LL);
  EXPECT_EQ(f.GetInt("test.i32"), -7);
  EXPECT_EQ(f.Find("test.i32")->type, GgufValueType::kInt32);
  EXPECT_DOUBLE_EQ(f.GetReal("test.f32"), 0.125);
  EXPECT_EQ(f.GetInt("test.bool"), 1);
  EXPECT_EQ(f.Find("test.strs")->strings, (std::vector<std::string>{"a", "", "\xE2\x96\x81hello"}));
  EXPECT_EQ(f.Find("test.floats")->array_type, GgufValueType::kFloat32);
  EXPECT_EQ(f.Find("test.floats")->numbers, (std::vector<double>{1.5, -2.0}));
  EXPECT_EQ(f.Find("test.ints")->array_type, GgufValueType::kInt32);
  EXPECT_EQ(f.Find("test.ints")->numbers, (std::vector<double>{3, -4, 5}));
  EXPECT_THROW(f.GetString("test.i32"), ConfigError);
  EXPECT_THROW(f.GetInt("missing.key"), ConfigError);

  ASSERT_EQ(f.tensors.size(), tensors.size());
  uint64_t data = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensorInfo& t = f.tensors[i];
    EXPECT_EQ(t.name, tensors[i].name);
    EXPECT_EQ(t.shape, tensors[i].shape);
    EXPECT_EQ(t.type, tensors[i].type);
    EXPECT_EQ(t.offset, data);
    EXPECT_EQ(t.offset % 32, 0u);
    data += (static_cast<uint64_t>(t.Bytes()) + 31) / 32 * 32;
    const auto bytes = ReadGgufTensorBytes(f, t);
    for (size_t k = 0; k < bytes.size(); ++k) ASSERT_EQ(bytes[k], pattern(i, static_cast<int64_t>(k))) << t.name;
  }
  EXPECT_EQ(f.tensors[1].Bytes(), 3 * 2 * 18);
  EXPECT_EQ(f.tensors[2].Bytes(), 2 * 84);
  EXPECT_EQ(f.data_offset % 32, 0u);
  EXPECT_EQ(f.data_offset, layout.data_offset);
  EXPECT_EQ(f.header_bytes, layout.header_bytes);
  EXPECT_EQ(f.file_bytes, f.data_offset + data);
  EXPECT_EQ(f.file_bytes, layout.file_bytes);
  EXPECT_EQ(fs::file_size(path), layout.file_bytes);
}

TEST(GgufWriter, ErrorsNameTheFileAndLeaveNothing) {
  TempDir dir("writer_err");
  const fs::path path = dir / "short.gguf";
  std::vector<GgufTensorInfo> tensors = {{"a.weight", {64}, GgmlType::kF32, 0}};
  try {
    WriteGguf(path, {}, tensors, [](size_t, const GgufTensorInfo&, const GgufWriteFn& w) {
      const uint8_t b[4] = {};
      w(b);  // 4 of 256 bytes
    });
    ADD_FAILURE() << "a short tensor was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("short.gguf"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(TemporaryLeft(dir.path(), "short.gguf"));
  // A row that is not a whole number of blocks is refused before writing.
  const std::string msg = ConfigErrorOf([&] {
    WriteGguf(path, {}, {{"x.weight", {100, 2}, GgmlType::kQ4_0, 0}}, [](size_t, const GgufTensorInfo&, const GgufWriteFn&) {});
  });
  EXPECT_NE(msg.find("x.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("100"), std::string::npos) << msg;
}

TEST(GgufWriter, ReaderRejectsTruncatedAndForeignFiles) {
  TempDir dir("reader");
  const fs::path path = dir / "t.gguf";
  WriteGguf(path, {{"general.name", GgufValue::Str("x")}}, {{"a.weight", {256, 4}, GgmlType::kF32, 0}},
            [](size_t, const GgufTensorInfo& t, const GgufWriteFn& w) {
              std::vector<uint8_t> b(static_cast<size_t>(t.Bytes()), 1);
              w(b);
            });
  fs::resize_file(path, fs::file_size(path) - 100);
  std::string msg = ConfigErrorOf([&] { ReadGguf(path); });
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  fs::resize_file(path, 40);  // inside the metadata
  msg = ConfigErrorOf([&] { ReadGguf(path); });
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  std::ofstream(dir / "not.gguf") << "this is not a gguf file at all, just text";
  msg = ConfigErrorOf([&] { ReadGguf(dir / "not.gguf"); });
  EXPECT_NE(msg.find("magic"), std::string::npos) << msg;
}

// ---------------------------------------------------------------- models

TEST(GgufModel, ListModelTensorsNamesShapesAndTypes) {
  const ModelArch stories = ResolveModelArch("stories260k");
  const GgufTensorPlan f16 = ListModelTensors(stories, PresetPlan("gguf-f16", stories));
  ASSERT_EQ(f16.tensors.size(), 2u + 9 * 5 + 1);
  EXPECT_EQ(f16.arch, "llama");
  EXPECT_EQ(f16.tensors.front().name, "token_embd.weight");
  EXPECT_EQ(f16.tensors.front().shape, (std::vector<int64_t>{64, 512}));
  EXPECT_EQ(f16.tensors.back().name, "output.weight");
  EXPECT_EQ(f16.tensors.back().type, GgmlType::kF16);
  EXPECT_EQ(f16.tensors[2].name, "blk.0.attn_q.weight");
  EXPECT_EQ(f16.tensors[2].op, "layers.0.attn.q_proj");
  EXPECT_EQ(f16.tensors[3].shape, (std::vector<int64_t>{64, 32}));  // attn_k: 4 KV heads x 8
  EXPECT_EQ(f16.tensors[9].name, "blk.0.ffn_down.weight");
  EXPECT_EQ(f16.tensors[9].shape, (std::vector<int64_t>{172, 64}));
  EXPECT_EQ(f16.tensors[1].type, GgmlType::kF32);  // attn_norm
  EXPECT_NEAR(f16.LinearBitsPerWeight(), 16.0, 1e-12);

  const ModelArch qwen = ResolveModelArch("qwen3-1.7b");
  const GgufTensorPlan mix = ListModelTensors(qwen, PresetPlan("gguf-w4w2-gateup", qwen));
  ASSERT_EQ(mix.tensors.size(), 3u + 11 * 28);
  EXPECT_EQ(mix.arch, "qwen3");
  int64_t total = 0;
  for (const auto& e : mix.tensors) {
    total += e.bytes;
    if (e.role == "ffn_gate" || e.role == "ffn_up") {
      EXPECT_EQ(e.type, GgmlType::kQ2_K) << e.name;
    }
    if (e.role == "attn_q" || e.role == "ffn_down" || e.role == "token_embd" || e.role == "output") {
      EXPECT_EQ(e.type, GgmlType::kQ4_0) << e.name;
    }
    if (e.role == "attn_q_norm") {
      EXPECT_EQ(e.shape, (std::vector<int64_t>{128})) << e.name;
    }
    EXPECT_EQ(e.bytes, GgmlRowBytes(e.type, e.shape[0]) * (e.elements / e.shape[0])) << e.name;
  }
  EXPECT_EQ(total, mix.total_bytes);
  EXPECT_GT(mix.LinearBitsPerWeight(), 2.625);
  EXPECT_LT(mix.LinearBitsPerWeight(), 4.5);
}

TEST(GgufModel, RandomWeightsAreDeterministicAndLoadable) {
  TempDir dir("random");
  const ModelArch arch = SmallArch("llama");
  const QuantPlan plan = PresetPlan("gguf-w4w2-gateup", arch);
  GgufWeightSource src;
  src.seed = 7;
  src.threads = 2;
  const GgufWriteResult r = WriteModelGguf(arch, plan, src, dir / "a.gguf");
  src.threads = 1;
  WriteModelGguf(arch, plan, src, dir / "b.gguf");
  src.seed = 8;
  WriteModelGguf(arch, plan, src, dir / "c.gguf");
  const auto a = FileBytes(dir / "a.gguf");
  EXPECT_EQ(a.size(), r.layout.file_bytes);
  EXPECT_TRUE(a == FileBytes(dir / "b.gguf")) << "same seed, different bytes (threads 2 vs 1)";
  EXPECT_FALSE(a == FileBytes(dir / "c.gguf")) << "seeds 7 and 8 gave the same file";

  const GgufFile f = ReadGguf(dir / "a.gguf");
  EXPECT_EQ(f.GetString("general.architecture"), "llama");
  EXPECT_EQ(f.GetString("general.name"), "small-llama");
  EXPECT_EQ(f.GetInt("llama.block_count"), 2);
  EXPECT_EQ(f.GetInt("llama.embedding_length"), 256);
  EXPECT_EQ(f.GetInt("llama.feed_forward_length"), 512);
  EXPECT_EQ(f.GetInt("llama.attention.head_count"), 4);
  EXPECT_EQ(f.GetInt("llama.attention.head_count_kv"), 2);
  EXPECT_EQ(f.GetInt("llama.context_length"), 1024);
  EXPECT_FLOAT_EQ(static_cast<float>(f.GetReal("llama.attention.layer_norm_rms_epsilon")), 1e-6f);
  EXPECT_FLOAT_EQ(static_cast<float>(f.GetReal("llama.rope.freq_base")), 1e6f);
  EXPECT_EQ(f.Find("general.file_type"), nullptr);  // mixed plan: llama.cpp guesses
  EXPECT_EQ(f.GetString("tokenizer.ggml.model"), "llama");
  const auto& tokens = f.Find("tokenizer.ggml.tokens")->strings;
  ASSERT_EQ(tokens.size(), 300u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[13], "<0x0A>");
  EXPECT_EQ(tokens[299], "tok_299");
  EXPECT_EQ(f.Find("tokenizer.ggml.token_type")->numbers[13], kTokenByte);
  EXPECT_EQ(f.Find("tokenizer.ggml.scores")->numbers.size(), 300u);
  EXPECT_EQ(f.GetInt("tokenizer.ggml.bos_token_id"), 1);
  ASSERT_EQ(f.tensors.size(), r.tensors.tensors.size());
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    EXPECT_EQ(f.tensors[i].name, r.tensors.tensors[i].name);
    EXPECT_EQ(f.tensors[i].type, r.tensors.tensors[i].type);
    EXPECT_EQ(f.tensors[i].Bytes(), r.tensors.tensors[i].bytes);
  }
  // Weights: zero mean, std ~0.02; norms 1.
  const GgufTensorInfo* gate = f.FindTensor("blk.1.ffn_gate.weight");
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(gate->type, GgmlType::kQ2_K);
  const GgufTensorInfo* q = f.FindTensor("blk.0.attn_q.weight");
  const auto qb = ReadGgufTensorBytes(f, *q);
  const auto qv = DequantizeRow(q->type, qb, q->Elements());
  double sum = 0, sq = 0;
  for (float v : qv) {
    sum += v;
    sq += v * v;
  }
  const double mean = sum / qv.size(), sd = std::sqrt(sq / qv.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.001);
  EXPECT_NEAR(sd, 0.02, 0.003);
  const auto norm = ReadGgufTensorBytes(f, *f.FindTensor("blk.1.ffn_norm.weight"));
  for (float v : DequantizeRow(GgmlType::kF32, norm, 256)) ASSERT_EQ(v, 1.0f);
}

TEST(GgufModel, Qwen3HasHeadNormsAndHeadDim) {
  TempDir dir("qwen3");
  ModelArch arch = SmallArch("qwen3");
  arch.head_dim = 128;  // != hidden / heads, as Qwen3-4B
  const QuantPlan plan = PresetPlan("gguf-q8_0", arch);
  WriteModelGguf(arch, plan, GgufWeightSource{}, dir / "q.gguf");
  const GgufFile f = ReadGguf(dir / "q.gguf");
  EXPECT_EQ(f.GetString("general.architecture"), "qwen3");
  EXPECT_EQ(f.GetInt("qwen3.attention.key_length"), 128);
  EXPECT_EQ(f.GetInt("qwen3.attention.value_length"), 128);
  EXPECT_EQ(f.GetInt("general.file_type"), 7);  // LLAMA_FTYPE_MOSTLY_Q8_0
  EXPECT_EQ(f.tensors.size(), 3u + 11 * 2);
  ASSERT_NE(f.FindTensor("blk.1.attn_k_norm.weight"), nullptr);
  EXPECT_EQ(f.FindTensor("blk.1.attn_k_norm.weight")->shape, (std::vector<int64_t>{128}));
  EXPECT_EQ(f.FindTensor("blk.0.attn_q.weight")->shape, (std::vector<int64_t>{256, 512}));
  EXPECT_EQ(f.FindTensor("blk.0.attn_output.weight")->shape, (std::vector<int64_t>{512, 256}));
  EXPECT_EQ(f.FindTensor("output.weight")->type, GgmlType::kQ8_0);
}

TEST(GgufModel, PlanWithoutGgmlTypesIsAConfigError) {
  const ModelArch arch = SmallArch("llama");
  const QuantPlan plan = ParseQuantPlan(LoadYamlString(R"(
name: int2-gateup
rules:
  - {pattern: "*.mlp.gate_proj", bits: 2, group_size: 32}
  - {pattern: "*", format: q4_0}
)", "plan.yaml"),
                                        "plan.yaml", "int2-gateup");
  const std::string msg = ConfigErrorOf([&] { ListModelTensors(arch, plan); });
  EXPECT_NE(msg.find("no ggml storage type for layers.0.mlp.gate_proj (INT2 g32)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("format: q2_k"), std::string::npos) << msg;
  EXPECT_NE(msg.find("plan.yaml"), std::string::npos) << msg;
  const std::string preset = ConfigErrorOf([&] { ListModelTensors(arch, PresetPlan("w4", arch)); });
  EXPECT_NE(preset.find("layers.0.attn.q_proj"), std::string::npos) << preset;
  EXPECT_NE(preset.find("gguf-* preset"), std::string::npos) << preset;
}

TEST(GgufModel, UnsupportedModelsAreConfigErrors) {
  ModelArch moe = SmallArch("qwen3");
  moe.num_local_experts = 8;
  moe.num_experts_per_tok = 2;
  EXPECT_THROW(ListModelTensors(moe, PresetPlan("gguf-f16", moe)), ConfigError);
  ModelArch other = SmallArch("llama");
  other.model_type = "gpt_oss";
  EXPECT_NE(ConfigErrorOf([&] { ListModelTensors(other, PresetPlan("gguf-f16", other)); }).find("gpt_oss"),
            std::string::npos);
  EXPECT_THROW(SyntheticVocab(258), ConfigError);
}

// ---------------------------------------------------------------- stories260K

TEST(GgufStories, F32FromTheCheckpointKeepsEveryFloat) {
  REQUIRE_SHARED(StoriesBin());
  REQUIRE_SHARED(StoriesTok());
  TempDir dir("stories");
  const ModelArch arch = ResolveModelArch("stories260k");
  GgufWeightSource src;
  src.checkpoint = StoriesBin();  // tokenizer found beside it (tok512.bin)
  const GgufWriteResult r = WriteModelGguf(arch, PresetPlan("gguf-f32", arch), src, dir / "s.gguf");
  const GgufFile f = ReadGguf(dir / "s.gguf");
  ASSERT_EQ(f.tensors.size(), 2u + 9 * 5 + 1);
  EXPECT_EQ(f.file_bytes, r.layout.file_bytes);
  EXPECT_EQ(f.GetInt("general.file_type"), 0);

  // The checkpoint's floats, after its 7-int32 header.
  const auto raw = FileBytes(StoriesBin());
  auto ckpt = [&](int64_t index) {
    float v;
    std::memcpy(&v, raw.data() + 28 + 4 * index, 4);
    return v;
  };
  auto gguf = [&](const std::string& name, int64_t index) {
    const GgufTensorInfo* t = f.FindTensor(name);
    EXPECT_NE(t, nullptr) << name;
    const auto b = ReadGgufTensorBytes(f, *t);
    float v;
    std::memcpy(&v, b.data() + 4 * index, 4);
    return v;
  };
  const int64_t D = 64, H = 172, L = 5, V = 512, KV = 32;
  const int64_t emb = 0, rms_att = V * D, wq = rms_att + L * D, wk = wq + L * D * D, wv = wk + L * KV * D,
                wo = wv + L * KV * D, rms_ffn = wo + L * D * D, w1 = rms_ffn + L * D, w2 = w1 + L * H * D,
                w3 = w2 + L * D * H, rms_final = w3 + L * H * D;
  EXPECT_EQ(gguf("token_embd.weight", 0), ckpt(emb));
  EXPECT_EQ(gguf("token_embd.weight", 300 * D + 17), ckpt(emb + 300 * D + 17));
  EXPECT_EQ(gguf("output.weight", 511 * D + 63), ckpt(emb + 511 * D + 63));  // shared classifier
  EXPECT_EQ(gguf("blk.3.attn_norm.weight", 5), ckpt(rms_att + 3 * D + 5));
  EXPECT_EQ(gguf("blk.4.attn_q.weight", 63 * D + 1), ckpt(wq + 4 * D * D + 63 * D + 1));
  EXPECT_EQ(gguf("blk.2.attn_k.weight", 5 * D + 9), ckpt(wk + 2 * KV * D + 5 * D + 9));
  EXPECT_EQ(gguf("blk.1.attn_v.weight", 31 * D), ckpt(wv + 1 * KV * D + 31 * D));
  EXPECT_EQ(gguf("blk.0.attn_output.weight", 7), ckpt(wo + 7));
  EXPECT_EQ(gguf("blk.2.ffn_norm.weight", 0), ckpt(rms_ffn + 2 * D));
  EXPECT_EQ(gguf("blk.3.ffn_gate.weight", 171 * D + 2), ckpt(w1 + 3 * H * D + 171 * D + 2));
  EXPECT_EQ(gguf("blk.4.ffn_down.weight", 63 * H + 171), ckpt(w2 + 4 * D * H + 63 * H + 171));
  EXPECT_EQ(gguf("blk.0.ffn_up.weight", 100), ckpt(w3 + 100));
  EXPECT_EQ(gguf("output_norm.weight", 63), ckpt(rms_final + 63));
  EXPECT_EQ(f.FindTensor("blk.4.ffn_down.weight")->shape, (std::vector<int64_t>{172, 64}));

  const auto& tokens = f.Find("tokenizer.ggml.tokens")->strings;
  ASSERT_EQ(tokens.size(), 512u);
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[2], "</s>");
  EXPECT_EQ(tokens[13], "<0x0A>");
  EXPECT_EQ(tokens[259], "\xE2\x96\x81t");  // " t" with the sentencepiece space
  const auto& types = f.Find("tokenizer.ggml.token_type")->numbers;
  EXPECT_EQ(types[0], kTokenUnknown);
  EXPECT_EQ(types[1], kTokenControl);
  EXPECT_EQ(types[3], kTokenByte);
  EXPECT_EQ(types[259], kTokenNormal);
  EXPECT_EQ(f.Find("tokenizer.ggml.scores")->numbers[260], -1.0);
}

TEST(GgufStories, F16WritesAndQ4_0OnTheFfnDownRowFails) {
  REQUIRE_SHARED(StoriesBin());
  TempDir dir("stories_f16");
  const ModelArch arch = ResolveModelArch("stories260k");
  GgufWeightSource src;
  src.checkpoint = StoriesBin();
  src.tokenizer = StoriesTok();
  WriteModelGguf(arch, PresetPlan("gguf-f16", arch), src, dir / "s.gguf");
  const GgufFile f = ReadGguf(dir / "s.gguf");
  EXPECT_EQ(f.FindTensor("blk.0.ffn_down.weight")->type, GgmlType::kF16);
  EXPECT_EQ(f.GetInt("general.file_type"), 1);

  for (const char* preset : {"gguf-w4", "gguf-q8_0"}) {
    const std::string msg = ConfigErrorOf([&] { WriteModelGguf(arch, PresetPlan(preset, arch), src, dir / "q.gguf"); });
    EXPECT_NE(msg.find("blk.0.ffn_down.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("172"), std::string::npos) << msg;
  }
  const std::string k = ConfigErrorOf([&] { ListModelTensors(arch, PresetPlan("gguf-w2", arch)); });
  EXPECT_NE(k.find("token_embd.weight"), std::string::npos) << k;  // 64-wide rows, blocks of 256
  EXPECT_FALSE(fs::exists(dir / "q.gguf"));
  EXPECT_FALSE(TemporaryLeft(dir.path(), "q.gguf"));
}

TEST(GgufStories, BadCheckpointsAreConfigErrors) {
  REQUIRE_SHARED(StoriesBin());
  TempDir dir("stories_bad");
  const ModelArch arch = ResolveModelArch("stories260k");
  const auto raw = FileBytes(StoriesBin());
  const fs::path cut = dir / "cut.bin";
  {
    std::ofstream out(cut, std::ios::binary);
    out.write(reinterpret_cast<const char*>(raw.data()), static_cast<std::streamsize>(raw.size() - 1000));
  }
  GgufWeightSource src;
  src.checkpoint = cut;
  src.tokenizer = StoriesTok();
  std::string msg = ConfigErrorOf([&] { WriteModelGguf(arch, PresetPlan("gguf-f32", arch), src, dir / "o.gguf"); });
  EXPECT_NE(msg.find("cut.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir / "o.gguf"));

  ModelArch wider = arch;
  wider.hidden_size = 128;
  wider.head_dim = 16;
  src.checkpoint = StoriesBin();
  msg = ConfigErrorOf([&] { CheckLlama2cCheckpoint(StoriesBin(), wider); });
  EXPECT_NE(msg.find("header.dim"), std::string::npos) << msg;
  EXPECT_NE(msg.find("128"), std::string::npos) << msg;

  // A tokenizer cut short.
  const auto tok = FileBytes(StoriesTok());
  {
    std::ofstream out(dir / "tok_cut.bin", std::ios::binary);
    out.write(reinterpret_cast<const char*>(tok.data()), 2000);
  }
  msg = ConfigErrorOf([&] { ReadLlama2cTokenizer(dir / "tok_cut.bin", 512); });
  EXPECT_NE(msg.find("tok_cut.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

}  // namespace
}  // namespace lifeline::measure
