// `lifeline report`'s deployed columns: a recovery cell's LoRA rank and
// targets attached to the throughput rows of its plan, forecast by the
// roofline, on a small store the test makes.

#include <gtest/gtest.h>

#include <algorithm>

#include "experiments/sweep/deployed_tps.hpp"
#include "experiments/sweep/joint_report.hpp"
#include "experiments/sweep/runner.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/graph/op_graph.hpp"
#include "tests/experiments/test_util.hpp"

namespace lifeline::sweep {
namespace {

using testing::TempDir;

TEST(DeployedReport, RecoveryCellsAdaptersAreAttachedToTheirPlansRows) {
  TempDir dir("deployed_report");
  Store s(dir / "r.db");
  RunOptions o;
  o.exe = LIFELINE_BINARY;
  RunLocal(s, testing::ParseText(R"(
throughput:
  axes:
    model: [qwen3-0.6b]
    device: [device_a, nvidia_a100_80gb]
    context: [4096]
    plan: [w4, w2, w4w2-gateup]
)"),
           o);
  std::vector<CellRow> rows = s.All();
  auto rec = [&](const std::string& id, const nlohmann::json& recipe, double ar) {
    CellRow r;
    r.id = id;
    r.kind = CellKind::kRecovery;
    r.inputs = {{"kind", "recovery"}, {"recipe", {{"bits", 2}}}};
    r.labels = {{"model", "stories260k"}, {"plan", "w4w2-gateup"}};
    r.status = CellStatus::kDone;
    r.outputs = {{"metrics", {{"perplexity", {{"teacher", 4.2}, {"quantized", 22.0}, {"recovered", 4.6}, {"ar_pct", ar}}}}},
                 {"recipe", recipe}};
    rows.push_back(r);
  };
  rec("lora", {{"method", "recover-lora"}, {"rank", 32}, {"lora_targets", {"mlp.gate_proj", "mlp.up_proj"}}}, 97.0);
  const JointReport rep = BuildJointReport(rows, {});
  const reports::Table& t = rep.tables[0].second;
  auto col = [&](const std::string& name) {
    const auto it = std::find(t.columns.begin(), t.columns.end(), name);
    EXPECT_NE(it, t.columns.end()) << name;
    return static_cast<size_t>(it - t.columns.begin());
  };
  // By hand: the same setting with rank-32 BF16 adapters on every gate/up projection.
  const ModelArch a = ResolveModelArch("qwen3-0.6b");
  QuantPlan p = PresetPlan("w4w2-gateup", a);
  for (const char* pat : {"layers.*.mlp.gate_proj", "layers.*.mlp.up_proj"}) {
    AdapterRule r;
    r.pattern = pat;
    r.rank = 32;
    p.adapters.push_back(r);
  }
  BuildOptions bo;  // as the throughput cells ran (the matrix's defaults)
  bo.fidelity = ParseFidelity(rows[0].inputs.at("fidelity").get<std::string>());
  bo.fusion = ParseFusionMode(rows[0].inputs.at("fusion").get<std::string>());
  const ModelGraph g = BuildModelGraph(a, p, bo);
  bool found = false;
  for (const auto& row : t.rows) {
    if (row[0].Text() != "w4w2-gateup") {
      EXPECT_TRUE(row[col("tps_deployed_device_a")].IsEmpty());  // no recovery cell on w4 / w2
      continue;
    }
    found = true;
    EXPECT_EQ(row[col("lora_rank")].Text(), "32");
    EXPECT_EQ(row[col("lora_targets")].Text(), "mlp.gate_proj mlp.up_proj");
    for (const std::string dev : {"device_a", "nvidia_a100_80gb"}) {
      const double tps = DecodeFromStep(EvaluateStep(g, ResolveDeviceSpec(dev), 4096).total_s, 1).tps;
      ASSERT_FALSE(row[col("tps_deployed_" + dev)].IsEmpty()) << dev;
      EXPECT_NEAR(std::get<double>(row[col("tps_deployed_" + dev)].value), tps, 1e-9 * tps) << dev;
      const double plain = std::get<double>(row[col("tps_" + dev)].value);
      EXPECT_LT(tps, plain);
      EXPECT_NEAR(std::get<double>(row[col("adapter_tps_cost_pct_" + dev)].value), 100.0 * (1.0 - tps / plain), 1e-9);
    }
  }
  EXPECT_TRUE(found);
}

TEST(DeployedReport, CellsWithoutAdaptersOrChangedFilesLeaveTheColumnEmptyAndSayWhy) {
  CellRow thr;
  thr.id = "t";
  thr.kind = CellKind::kThroughput;
  thr.inputs = {{"kind", "throughput"}, {"model", "qwen3-0.6b"}, {"device", "device_a"}, {"plan", "w4w2-gateup"},
                {"context", 4096}, {"fidelity", "paper"}, {"fusion", "paper"}, {"batch", 1}};
  thr.status = CellStatus::kDone;
  thr.outputs = {{"tps", 123.0}};  // not what the files give now
  CellRow qat = thr;
  qat.id = "q";
  qat.kind = CellKind::kRecovery;
  qat.inputs = {{"kind", "recovery"}, {"recipe", {{"bits", 2}}}};
  qat.labels = {{"model", "stories260k"}, {"plan", "w4w2-gateup"}};
  qat.outputs = {{"metrics", {{"perplexity", {{"teacher", 4.2}, {"quantized", 22.0}, {"recovered", 4.6}, {"ar_pct", 97.0}}}}},
                 {"recipe", {{"method", "llm-qat"}}}};
  JointReport rep = BuildJointReport({thr, qat}, {});
  const reports::Table* t = &rep.tables[0].second;
  auto has_note = [&](const std::string& part) {
    return std::any_of(t->notes.begin(), t->notes.end(), [&](const std::string& n) { return n.find(part) != n.npos; });
  };
  EXPECT_TRUE(has_note("llm-qat trains every parameter")) << t->notes.size();
  qat.outputs["recipe"] = {{"method", "recover-lora"}, {"rank", 8}, {"lora_targets", {"mlp.down_proj"}}};
  rep = BuildJointReport({thr, qat}, {});
  t = &rep.tables[0].second;
  EXPECT_TRUE(has_note("differs from the stored cell"));
  qat.outputs["recipe"]["lora_targets"] = {"mlp.w9"};
  thr.outputs["tps"] = 0.0;
  rep = BuildJointReport({thr, qat}, {});
  t = &rep.tables[0].second;
  EXPECT_TRUE(has_note("match no linear of qwen3-0.6b"));
}

TEST(DeployedReport, RecoveryPatternsMatchHuggingFaceNamesByComponent) {
  EXPECT_EQ(HfModuleName("layers.3.attn.q_proj"), "model.layers.3.self_attn.q_proj");
  EXPECT_EQ(HfModuleName("layers.3.mlp.gate_proj"), "model.layers.3.mlp.gate_proj");
  EXPECT_EQ(HfModuleName("lm_head"), "lm_head");
  EXPECT_TRUE(RecoveryPatternMatches("mlp.gate_proj", "model.layers.3.mlp.gate_proj"));
  EXPECT_TRUE(RecoveryPatternMatches("layers.*.self_attn.q_proj", "model.layers.3.self_attn.q_proj"));
  EXPECT_TRUE(RecoveryPatternMatches("layers.3.mlp.up_proj", "model.layers.3.mlp.up_proj"));
  EXPECT_FALSE(RecoveryPatternMatches("layers.3.mlp.up_proj", "model.layers.13.mlp.up_proj"));
  EXPECT_FALSE(RecoveryPatternMatches("gate", "model.layers.3.mlp.gate_proj"));
}

}  // namespace
}  // namespace lifeline::sweep
