// Model zoo, device specs and quantization plans: every shipped file loads,
// HF config.json is accepted, parameter counts match the published models.

#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/yaml_util.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline {
namespace {

std::vector<std::filesystem::path> YamlFiles(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".yaml") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ModelZoo, EveryShippedYamlLoads) {
  const auto files = YamlFiles(ModelZooDir());
  ASSERT_GE(files.size(), 10u);
  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    const ModelArch a = LoadModelArch(f);
    EXPECT_EQ(a.name, f.stem().string());
    EXPECT_GT(a.ParameterCount(), 0);
  }
}

TEST(ModelZoo, RequiredModelsPresent) {
  for (const char* m : {"qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b", "gpt-oss-20b",
                        "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "stories260k"}) {
    EXPECT_NO_THROW(ResolveModelArch(m)) << m;
  }
}

TEST(ModelZoo, ParameterCountsMatchPublishedModels) {
  // stories260K: the shared README gives 260,032 parameters exactly.
  EXPECT_EQ(ResolveModelArch("stories260k").ParameterCount(), 260032);
  // Published sizes (billions), within 2%.
  const std::pair<const char*, double> sizes[] = {{"qwen3-4b", 4.02}, {"qwen3-8b", 8.19},   {"qwen3-14b", 14.77},
                                                  {"llama-3.2-1b", 1.24}, {"llama-3.1-8b", 8.03},
                                                  {"gpt-oss-20b", 20.9}};
  for (const auto& [name, b] : sizes) {
    const double got = static_cast<double>(ResolveModelArch(name).ParameterCount()) / 1e9;
    EXPECT_NEAR(got, b, 0.02 * b) << name;
  }
}

TEST(ModelZoo, GptOssIsMoeWithAlternatingWindows) {
  const ModelArch a = ResolveModelArch("gpt-oss-20b");
  EXPECT_EQ(a.num_local_experts, 32);
  EXPECT_EQ(a.num_experts_per_tok, 4);
  EXPECT_TRUE(a.attention_bias);
  ASSERT_EQ(a.layer_types.size(), 24u);
  EXPECT_EQ(a.LayerAttention(0), AttentionKind::kSliding);
  EXPECT_EQ(a.LayerAttention(1), AttentionKind::kFull);
  EXPECT_EQ(a.sliding_window, 128);
}

TEST(ModelZoo, HuggingFaceConfigJsonAcceptedWhereverAZooNameIs) {
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_hf_cfg";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 2560,
    "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": true,
    "rope_theta": 1000000, "rms_norm_eps": 1e-06, "torch_dtype": "bfloat16", "max_position_embeddings": 40960})";
  const ModelArch from_json = ResolveModelArch(dir.string());  // directory with config.json
  const ModelArch from_zoo = ResolveModelArch("qwen3-4b");
  EXPECT_EQ(from_json.ParameterCount(), from_zoo.ParameterCount());
  EXPECT_TRUE(from_json.qk_norm);
  EXPECT_EQ(from_json.head_dim, 128);
  const ModelArch by_file = ResolveModelArch((dir / "config.json").string());
  EXPECT_EQ(by_file.hidden_size, 2560);
}

TEST(ModelZoo, MalformedJsonNamesLineAndColumn) {
  const auto f = std::filesystem::temp_directory_path() / "lifeline_bad_config.json";
  std::ofstream(f) << "{\n  \"hidden_size\": 64,\n  \"vocab_size\": ,\n}";
  try {
    LoadModelArch(f);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(f.string() + ":3:"), std::string::npos) << e.what();
  }
}

TEST(StrictYaml, DuplicateKeysAreRejectedAtAnyDepth) {
  auto error_of = [](const std::string& text) {
    try {
      LoadYamlString(text, "t.yaml");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error_of("a: 1\nb: 2\n"), "");
  EXPECT_NE(error_of("a: 1\nb: 2\na: 3\n").find("t.yaml:3:1: key 'a': duplicate key (first given at line 1)"),
            std::string::npos);
  EXPECT_NE(error_of("a:\n  b: [{c: 1, c: 2}]\n").find("key 'a.b[0].c': duplicate key"), std::string::npos);
  EXPECT_NE(error_of("x: {p: 1, \"p\": 2}\n").find("key 'x.p'"), std::string::npos);
  // Aliases repeat a subtree without copying it: checking it once keeps a
  // "billion laughs" document as cheap as its text.
  std::string bomb = "l0: &l0 [a, a]\n";
  for (int i = 1; i < 40; ++i) {
    bomb += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [*l" + std::to_string(i - 1) + ", *l" +
            std::to_string(i - 1) + "]\n";
  }
  EXPECT_EQ(error_of(bomb), "");
}

TEST(StrictJson, DuplicateKeysAreRejectedWithTheirPosition) {
  auto error_of = [](const std::string& text) {
    try {
      ParseJsonStrict(text, "c.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error_of(R"({"a": 1, "b": {"a": 2}, "c": [{"a": 1}, {"a": 2}]})"), "");
  EXPECT_NE(error_of("{\"a\": 1,\n \"a\": 2}").find("c.json:2:2: key 'a': duplicate key (first given at 1:2)"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"x": [{"k": 1}, {"k": 1, "k": 2}]})").find("key 'x[1].k'"), std::string::npos);
  // The same key spelled with an escape is the same key.
  EXPECT_NE(error_of(R"({"ab": 1, "a\u0062": 2})").find("duplicate key"), std::string::npos);
  // Strings holding braces, quotes and commas are not keys.
  EXPECT_EQ(error_of(R"({"a": "{\"a\": 1, \"a\": 2}", "b": "x,y"})"), "");
  std::map<std::string, std::string> where;
  ParseJsonStrict("{\n  \"hidden_size\": 1,\n  \"n\": {\"hidden_size\": 2}\n}", "c.json", &where);
  EXPECT_EQ(where.at("hidden_size"), "c.json:2:3");
  EXPECT_EQ(where.size(), 2u);
}

TEST(ModelZoo, UnknownZooNameSuggestsClosest) {
  try {
    ResolveModelArch("qwen3-4B");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'qwen3-4b'"), std::string::npos) << e.what();
  }
}

TEST(Hwspec, EveryShippedDeviceLoadsWithSources) {
  const auto files = YamlFiles(HwspecDir());
  ASSERT_GE(files.size(), 2u);
  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    const DeviceSpec d = LoadDeviceSpec(f);
    EXPECT_GT(d.compute_ops_per_s, 0);
    EXPECT_GT(d.memory_bandwidth_bytes_per_s, 0);
    EXPECT_TRUE(d.sources.count("int8_tops")) << "cite a source for int8_tops";
    EXPECT_TRUE(d.sources.count("memory_bandwidth_gb_per_s")) << "cite a source for the bandwidth";
  }
}

TEST(Hwspec, PaperDevicesHaveThePublishedPeaks) {
  const DeviceSpec a = ResolveDeviceSpec("device_a"), b = ResolveDeviceSpec("device_b");
  EXPECT_DOUBLE_EQ(a.compute_ops_per_s, 50e12);
  EXPECT_DOUBLE_EQ(a.memory_bandwidth_bytes_per_s, 100e9);
  EXPECT_DOUBLE_EQ(b.compute_ops_per_s, 100e12);
  EXPECT_DOUBLE_EQ(b.memory_bandwidth_bytes_per_s, 200e9);
}

TEST(Hwspec, YamlRoundTrip) {
  const DeviceSpec a = ResolveDeviceSpec("device_a");
  const DeviceSpec back = ParseDeviceSpec(YAML::Load(DeviceSpecToYaml(a)), "roundtrip");
  EXPECT_DOUBLE_EQ(back.memory_efficiency, a.memory_efficiency);
  EXPECT_DOUBLE_EQ(back.moe_expert_compute_int4_efficiency, a.moe_expert_compute_int4_efficiency);
  EXPECT_DOUBLE_EQ(back.head_dispatch_overhead_s, a.head_dispatch_overhead_s);
  EXPECT_EQ(back.sources, a.sources);
}

TEST(QuantPlan, WeightBytesFollowThePaperFormula) {
  // b/8 + (2 + b/8)/g bytes per element: BF16 scale + zero at the weight's bit width.
  const WeightFormat int4{4, 128, QuantMetadata::kScaleBf16ZeroPacked};
  const WeightFormat int2{2, 32, QuantMetadata::kScaleBf16ZeroPacked};
  EXPECT_DOUBLE_EQ(int4.ValueBytes(1) + int4.MetadataBytes(1), 0.5 + 2.5 / 128);
  EXPECT_DOUBLE_EQ(int2.ValueBytes(1) + int2.MetadataBytes(1), 0.25 + 2.25 / 32);
  const WeightFormat sym{4, 128, QuantMetadata::kScaleBf16};
  EXPECT_DOUBLE_EQ(sym.MetadataBytes(128), 2.0);
}

TEST(QuantPlan, PresetsAssignFormatsByPattern) {
  const ModelArch q = ResolveModelArch("qwen3-4b"), g = ResolveModelArch("gpt-oss-20b");
  const QuantPlan p = PresetPlan("w4w2-gateup", q);
  EXPECT_EQ(p.FormatFor("layers.3.mlp.gate_proj").Label(), "INT2 g32");
  EXPECT_EQ(p.FormatFor("layers.3.mlp.up_proj").Label(), "INT2 g32");
  EXPECT_EQ(p.FormatFor("layers.3.mlp.down_proj").Label(), "INT4 g128");
  EXPECT_EQ(p.FormatFor("lm_head").Label(), "INT4 g128");
  EXPECT_EQ(PresetPlan("w4", g).FormatFor("layers.0.mlp.experts.down_proj").Label(), "INT4 g64");
  EXPECT_EQ(PresetPlan("w4w3-gateup", q).FormatFor("layers.0.mlp.up_proj").Label(), "INT3 g32");
  EXPECT_EQ(PresetPlan("bf16w2-gateup", q).FormatFor("layers.0.attn.q_proj").Label(), "BF16");
  for (const auto& n : PresetPlanNames()) EXPECT_NO_THROW(PresetPlan(n, q)) << n;
}

TEST(QuantPlan, UnknownPresetIsAClearError) {
  try {
    PresetPlan("w4w2-gatup", ResolveModelArch("qwen3-4b"));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'w4w2-gateup'"), std::string::npos) << e.what();
  }
}

TEST(QuantPlan, GlobMatch) {
  EXPECT_TRUE(GlobMatch("*", "lm_head"));
  EXPECT_TRUE(GlobMatch("*gate_proj", "layers.1.mlp.experts.gate_proj"));
  EXPECT_TRUE(GlobMatch("layers.*.attn.*", "layers.10.attn.q_proj"));
  EXPECT_FALSE(GlobMatch("*.mlp.gate_proj", "layers.1.mlp.up_proj"));
  EXPECT_FALSE(GlobMatch("lm_head", "lm_head_2"));
}

// Dependency direction: nothing in roofline/ includes torch.
TEST(Layering, RooflineHasNoTorch) {
  const std::regex torch_include(R"(#include\s*[<"](torch|ATen|c10)/)");
  for (const auto& e : std::filesystem::recursive_directory_iterator(SourceDir() / "roofline")) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path());
    std::string text((std::istreambuf_iterator<char>(in)), {});
    EXPECT_FALSE(std::regex_search(text, torch_include)) << e.path();
  }
}

}  // namespace
}  // namespace lifeline
