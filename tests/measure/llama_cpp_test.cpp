// GGUF files as llama.cpp reads them, the bytes the roofline counts for them,
// and the `lifeline measure` contract. Built only with llama.cpp
// (scripts/setup.sh --with-llama-cpp); everything here runs through the
// lifeline-llama driver and the lifeline binary.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "experiments/measure/gguf_model.hpp"
#include "experiments/measure/llama_runner.hpp"
#include "common/subprocess.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/ggml_format.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"
#include "tests/experiments/test_util.hpp"

namespace lifeline::measure {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using sweep::testing::TempDir;

// A small model both llama.cpp architectures can hold: rows of 256 fit every
// block size, including the k-quants' 256.
fs::path WriteTinyModel(const TempDir& d, const std::string& type) {
  const fs::path p = d / ("tiny_" + type + ".yaml");
  std::ofstream(p) << "name: tiny-" << type << "\nmodel_type: " << type
                   << "\nhidden_size: 256\nintermediate_size: 512\nnum_hidden_layers: 2\n"
                      "num_attention_heads: 4\nnum_key_value_heads: 2\nhead_dim: 64\nvocab_size: 320\n"
                      "max_position_embeddings: 2048\ntie_word_embeddings: false\nrms_norm_eps: 1.0e-6\n"
                      "rope_theta: 10000\n";
  return p;
}

QuantPlan PlanOf(const std::string& fmt) {
  return ParseQuantPlan(YAML::Load("rules:\n  - {pattern: '*', format: " + fmt + "}\n"), "<test>", "all-" + fmt);
}

TEST(LlamaCpp, ReadsBackEveryTypeWithItsMetadataAndShapes) {
  TempDir d("llama_readback");
  for (const std::string arch_type : {"llama", "qwen3"}) {
    const ModelArch arch = LoadModelArch(WriteTinyModel(d, arch_type));
    for (const auto& layout : GgmlLayouts()) {
      SCOPED_TRACE(arch_type + " " + layout.name);
      const QuantPlan plan = PlanOf(layout.name);
      const fs::path f = d / (arch_type + "_" + layout.name + ".gguf");
      GgufWeightSource src;
      src.seed = 7;
      const GgufWriteResult w = WriteModelGguf(arch, plan, src, f);
      const json info = RunLlamaDriver({"info", f.string()});
      EXPECT_EQ(info["metadata"]["general.architecture"], arch_type);
      EXPECT_EQ(info["metadata"][arch_type + ".block_count"], 2);
      EXPECT_EQ(info["metadata"][arch_type + ".embedding_length"], 256);
      EXPECT_EQ(info["metadata"][arch_type + ".attention.head_count_kv"], 2);
      EXPECT_EQ(info["llama"]["n_layer"], 2);
      EXPECT_EQ(info["llama"]["n_vocab"], 320);
      EXPECT_EQ(info["llama"]["n_params"].get<int64_t>(), w.tensors.total_elements);
      ASSERT_EQ(info["tensors"].size(), w.tensors.tensors.size());
      for (size_t i = 0; i < w.tensors.tensors.size(); ++i) {
        const auto& mine = w.tensors.tensors[i];
        const json& theirs = info["tensors"][i];
        EXPECT_EQ(theirs["name"], mine.name);
        EXPECT_EQ(theirs["shape"].get<std::vector<int64_t>>(), mine.shape) << mine.name;
        EXPECT_EQ(theirs["type_id"].get<int>(), static_cast<int>(mine.type)) << mine.name;
        EXPECT_EQ(theirs["bytes"].get<int64_t>(), mine.bytes) << mine.name;
      }
      fs::remove(f);
    }
  }
}

TEST(LlamaCpp, RooflineCountsTheWeightBytesLlamaCppStores) {
  // For every linear of the graph, the roofline's weight bytes (values +
  // block metadata) equal the stored bytes of the GGUF tensor llama.cpp reads.
  TempDir d("llama_bytes");
  const ModelArch arch = LoadModelArch(WriteTinyModel(d, "qwen3"));
  for (const std::string preset : {"gguf-f16", "gguf-q8_0", "gguf-w4", "gguf-w2", "gguf-w4w2-gateup"}) {
    SCOPED_TRACE(preset);
    const QuantPlan plan = ResolveQuantPlan(preset, arch);
    const GgufTensorPlan t = ListModelTensors(arch, plan);
    std::map<std::string, int64_t> stored;  // roofline op -> bytes
    for (const auto& e : t.tensors) {
      if (!e.op.empty() && e.role != "token_embd") stored[e.op] += e.bytes;
    }
    BuildOptions b;
    b.fidelity = Fidelity::kExact;
    const ModelGraph g = BuildModelGraph(arch, plan, b);
    int linears = 0;
    for (auto v : g.order) {
      const OpNode& n = g.graph[v];
      if (n.kind != OpKind::kLinear) continue;
      ++linears;
      ASSERT_TRUE(stored.count(n.name)) << n.name;
      EXPECT_DOUBLE_EQ(n.weight_bytes + n.weight_meta_bytes, static_cast<double>(stored[n.name])) << n.name;
    }
    EXPECT_EQ(linears, 2 * 7 + 1);
  }
}

std::string Lifeline() { return LIFELINE_BINARY; }

TEST(LlamaCpp, MeasureWritesItsContractAndResumesFromTheStore) {
  TempDir d("llama_measure");
  const fs::path model = WriteTinyModel(d, "llama");
  const std::vector<std::string> argv = {Lifeline(), "measure", "--model", model.string(), "--plan",
                                         "gguf-w4,gguf-f16", "--context", "0,64", "--gen", "8", "--reps", "1", "--rounds", "2",
                                         "--warmup", "1", "--format", "json", "--out", (d / "out").string(),
                                         "--gguf-cache", (d / "cache").string(), "--max-other-cpu", "1"};
  ProcessResult r = RunProcess(argv);
  ASSERT_EQ(r.status, 0) << r.err;
  const json points = json::parse(std::ifstream(d / "out" / "measure.json"));
  ASSERT_EQ(points.size(), 4u);
  for (const auto& p : points) {
    for (const char* k : {"model", "plan", "context_tokens", "rep_tps", "tps_median", "tps_min", "tps_max",
                          "other_cpu_share", "steal_share", "noisy", "attempts", "prefill_tps", "raw"}) {
      EXPECT_TRUE(p.contains(k)) << k;
    }
    EXPECT_EQ(p["rep_tps"].size(), 2u);
    EXPECT_GT(p["tps_median"].get<double>(), 0.0);
    EXPECT_LE(p["tps_min"].get<double>(), p["tps_median"].get<double>());
    EXPECT_EQ(p["raw"]["kv_cells"].get<int64_t>(), p["context_tokens"].get<int64_t>());
    EXPECT_EQ(p["raw"]["reps"][0]["token_s"].size(), 8u);
  }
  std::string header;
  std::getline(std::ifstream(d / "out" / "measure.csv") >> std::ws, header);
  EXPECT_EQ(header,
            "model,plan,context_tokens,measured_tps,measured_tps_min,measured_tps_max,other_cpu_share,noisy,"
            "forecast_tps,error_pct,prefill_tps");
  // The same command again measures nothing: every point is in the store.
  r = RunProcess(argv, /*merge_stderr=*/true);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("0 points measured now, 4 from"), std::string::npos) << r.out;
}

TEST(LlamaCpp, SynthesisedAndPrefilledContextsHoldTheSameCells) {
  TempDir d("llama_fill");
  const ModelArch arch = LoadModelArch(WriteTinyModel(d, "qwen3"));
  const fs::path f = d / "m.gguf";
  WriteModelGguf(arch, ResolveQuantPlan("gguf-f16", arch), GgufWeightSource{}, f);
  for (const std::string fill : {"synth", "prefill"}) {
    const json j = RunLlamaDriver({"bench", f.string(), "--depths", "0,300,1000", "--gen", "4", "--reps", "1",
                                   "--warmup", "1", "--fill", fill});
    ASSERT_EQ(j["decode"].size(), 3u);
    EXPECT_EQ(j["decode"][1]["kv_cells"], 300) << fill;
    EXPECT_EQ(j["decode"][2]["kv_cells"], 1000) << fill;
  }
}

}  // namespace
}  // namespace lifeline::measure
