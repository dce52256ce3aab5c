#include "experiments/paper/paper.hpp"

#include <memory>

#include "common/csv.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"
#include "roofline/eval/evaluator.hpp"

namespace lifeline {

double GainPct(double w4, double w4w2) { return (w4w2 / w4 - 1.0) * 100.0; }
double CapturePct(double w4, double w2, double w4w2) { return (w4w2 - w4) / (w2 - w4) * 100.0; }

std::filesystem::path DefaultPaperReferencePath() {
  return SourceDir() / "experiments" / "paper" / "reference" / "paper_decode_tps.csv";
}

PaperReference LoadPaperReference(const std::filesystem::path& csv) {
  const CsvFile f = ReadCsv(csv, "the paper reference",
                            "the repository keeps it at experiments/paper/reference/paper_decode_tps.csv (set "
                            "LIFELINE_SOURCE_DIR to the checkout, or pass --reference FILE)");
  f.RequireHeader({"device", "model", "context_tokens", "tps_w4", "tps_w2", "tps_w4w2_gateup", "gain_pct"});
  PaperReference ref;
  for (const CsvRecord& row : f.rows) {
    const auto& v = row.fields;
    try {
      size_t used = 0;
      auto number = [&](const std::string& s) {
        const double d = std::stod(s, &used);
        if (used != s.size()) throw std::invalid_argument(s);
        return d;
      };
      PaperReferenceRow r{number(v[3]), number(v[4]), number(v[5]), number(v[6])};
      const long long context = std::stoll(v[2], &used);
      if (used != v[2].size()) throw std::invalid_argument(v[2]);
      ref[{v[0], v[1], context}] = r;
    } catch (const std::exception&) {
      throw MakeConfigError(f.Where(row.line), "", "non-numeric value", "numbers in columns 3-7", "");
    }
  }
  return ref;
}

double DecodeTps(const ModelArch& arch, const std::string& plan, const DeviceSpec& d, int64_t context,
                 Fidelity fidelity) {
  BuildOptions o;
  o.fidelity = fidelity;
  const ModelGraph g = BuildModelGraph(arch, PresetPlan(plan, arch), o);
  return 1.0 / CompiledGraph(g).StepSeconds(d, context);
}

std::vector<PaperRow> ComputePaperRows(const std::vector<DeviceSpec>& devices, const std::vector<ModelArch>& models,
                                       const std::vector<int64_t>& contexts, Fidelity fidelity) {
  std::vector<PaperRow> rows;
  BuildOptions o;
  o.fidelity = fidelity;
  for (const auto& d : devices) {
    for (const auto& m : models) {
      std::vector<CompiledGraph> graphs;
      for (const auto& p : kPaperPlans) graphs.emplace_back(BuildModelGraph(m, PresetPlan(p, m), o));
      for (int64_t c : contexts) {
        PaperRow r;
        r.device = d.name;
        r.model = m.name;
        r.context_tokens = c;
        r.tps_w4 = 1.0 / graphs[0].StepSeconds(d, c);
        r.tps_w2 = 1.0 / graphs[1].StepSeconds(d, c);
        r.tps_w4w2_gateup = 1.0 / graphs[2].StepSeconds(d, c);
        r.gain_pct = GainPct(r.tps_w4, r.tps_w4w2_gateup);
        r.capture_pct = CapturePct(r.tps_w4, r.tps_w2, r.tps_w4w2_gateup);
        rows.push_back(r);
      }
    }
  }
  return rows;
}

std::vector<DeviceParam> PaperFitParams() {
  return {DeviceParam::kMemoryEfficiency, DeviceParam::kAttentionComputeEfficiency,
          DeviceParam::kMoeExpertComputeInt2Efficiency, DeviceParam::kMoeExpertComputeInt4Efficiency,
          DeviceParam::kHeadDispatchOverhead, DeviceParam::kDispatchOverhead};
}

PaperCalibration CalibratePaperDevice(const DeviceSpec& initial, const std::vector<ModelArch>& models,
                                      const PaperReference& ref) {
  PaperCalibration pc;
  std::vector<const CompiledGraph*> obs_graph;
  std::vector<int64_t> obs_ctx;
  std::vector<double> targets;
  std::vector<std::unique_ptr<CompiledGraph>> graphs;
  BuildOptions o;
  o.fidelity = Fidelity::kPaper;
  for (const auto& m : models) {
    for (const auto& p : kPaperPlans) {
      graphs.push_back(std::make_unique<CompiledGraph>(BuildModelGraph(m, PresetPlan(p, m), o)));
      for (const auto& [key, row] : ref) {
        if (std::get<0>(key) != initial.name || std::get<1>(key) != m.name) continue;
        const double target = p == "w4" ? row.tps_w4 : p == "w2" ? row.tps_w2 : row.tps_w4w2_gateup;
        obs_graph.push_back(graphs.back().get());
        obs_ctx.push_back(std::get<2>(key));
        targets.push_back(target);
        pc.keys.push_back(key);
        pc.plans.push_back(p);
      }
    }
  }
  if (targets.empty()) {
    throw MakeConfigError("paper reference", initial.name, "no published rows for this device",
                          "a device named as in the reference CSV (device_a, device_b)", "");
  }
  auto predict = [&](const DeviceSpec& d) {
    std::vector<double> y(targets.size());
    for (size_t i = 0; i < y.size(); ++i) y[i] = 1.0 / obs_graph[i]->StepSeconds(d, obs_ctx[i]);
    return y;
  };
  pc.fit = CalibrateDevice(initial, PaperFitParams(), predict, targets);
  return pc;
}

}  // namespace lifeline
