// `lifeline calibrate`: fit a device's efficiencies and overheads.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>

#include "experiments/commands.hpp"
#include "reports/table.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"
#include "experiments/paper/paper.hpp"

namespace lifeline::cli {
namespace {

struct CalibrateOptions {
  std::string device = "device_a";
  bool paper = false;
  std::string reference;
  std::string write;
  std::string residuals;
  std::vector<std::string> models = kPaperModels;
  std::string observations;
  std::vector<std::string> fit;
};

std::string ConvergedText(const CalibrationResult& fit) {
  if (!fit.problem.empty()) return "no (" + fit.problem + ")";
  return fit.converged ? "yes" : "no (the iteration limit was reached)";
}

// A fit whose predictions collapsed or whose residual is large ends the
// command with an error (after its tables), and its device is not written.
void RefuseUnusableFit(const CalibrationResult& fit, const std::string& write) {
  if (fit.problem.empty()) return;
  throw Error("calibration failed: " + fit.problem + (write.empty() ? "" : "; " + write + " was not written") +
              ". Check that the observations belong to this device (--device) and their units (tokens/s, seconds), "
              "or fit other parameters (--fit)");
}

// Fit to an observations CSV (measured or published TPS / TTFT).
void RunObservationCalibration(const CalibrateOptions& o) {
  const DeviceSpec initial = ResolveDeviceSpec(o.device);
  std::vector<DeviceParam> params;
  for (const auto& k : o.fit) params.push_back(ParseDeviceParam(k));
  if (params.empty()) params = PaperFitParams();
  const std::vector<Observation> obs = LoadObservationsCsv(o.observations, initial.name);
  const ObservationFit of = CalibrateFromObservations(initial, params, obs);

  reports::Table pt;
  pt.title = "Fitted parameters of " + initial.name;
  pt.columns = {"parameter", "initial", "fitted"};
  for (auto p : params) {
    DeviceSpec a = initial, b = of.fit.device;
    pt.rows.push_back({DeviceParamKey(p), reports::Cell(DeviceParamRef(a, p), 9), reports::Cell(DeviceParamRef(b, p), 9)});
  }
  reports::Table res;
  res.title = "Residuals per observation (model - measured)";
  res.columns = {"row", "model", "plan", "context_tokens", "prompt_tokens", "quantity", "measured", "model_value",
                 "residual", "residual_pct"};
  for (size_t i = 0; i < of.rows.size(); ++i) {
    const Observation& ob = obs[of.rows[i]];
    const bool ttft = of.kinds[i] == "ttft_s";
    res.rows.push_back({ob.where.substr(ob.where.rfind(':') + 1), ob.arch.name, ob.plan.name,
                        reports::Cell::Int(ob.context_tokens), ttft ? reports::Cell::Int(ob.prompt_tokens) : reports::Cell(),
                        of.kinds[i], reports::Cell(of.measured[i], ttft ? 6 : 3), reports::Cell(of.predicted[i], ttft ? 6 : 3),
                        reports::Cell(of.residuals[i], ttft ? 6 : 3),
                        reports::Cell(100.0 * of.residuals[i] / of.measured[i], 2)});
  }
  std::string quality;
  if (of.tps_count)
    quality += fmt::format("TPS: {} rows, rms {:.4f}, max |residual| {:.4f} tokens/s, R^2 {:.6f}", of.tps_count,
                           of.rms_tps, of.max_abs_tps, of.r2_tps);
  if (of.ttft_count)
    quality += fmt::format("{}TTFT: {} rows, rms {:.6f} s, max |residual| {:.6f} s, R^2 {:.6f}",
                           quality.empty() ? "" : "; ", of.ttft_count, of.rms_ttft_s, of.max_abs_ttft_s, of.r2_ttft);
  res.notes.push_back(quality + fmt::format("; {} iterations, converged: {}", of.fit.iterations,
                                            ConvergedText(of.fit)));
  std::cout << reports::ToText(pt) << "\n" << reports::ToText(res);
  RefuseUnusableFit(of.fit, o.write);
  if (!o.residuals.empty()) reports::WriteFileAtomic(o.residuals, reports::ToCsv(res), "--residuals");
  if (!o.write.empty()) {
    DeviceSpec d = of.fit.device;
    const bool fit3 = std::find(params.begin(), params.end(), DeviceParam::kMoeExpertComputeInt3Efficiency) != params.end();
    const bool fit8 = std::find(params.begin(), params.end(), DeviceParam::kMoeExpertComputeInt8Efficiency) != params.end();
    if (!fit3 && initial.moe_expert_compute_int3_efficiency == initial.moe_expert_compute_int4_efficiency)
      d.moe_expert_compute_int3_efficiency = d.moe_expert_compute_int4_efficiency;
    if (!fit8 && initial.moe_expert_compute_int8_efficiency == initial.moe_expert_compute_int4_efficiency)
      d.moe_expert_compute_int8_efficiency = d.moe_expert_compute_int4_efficiency;
    const std::string note = fmt::format("fitted by `lifeline calibrate --observations {}` ({})",
                                         std::filesystem::path(o.observations).filename().string(), quality);
    for (auto p : params) d.sources[DeviceParamKey(p)] = note;
    reports::WriteFileAtomic(o.write, DeviceSpecToYaml(d), "--write");
    std::cout << "wrote " << o.write << "\n";
  }
}

void RunCalibrate(const CalibrateOptions& o) {
  if (!o.observations.empty()) {
    if (o.paper) {
      throw MakeConfigError("lifeline calibrate", "--paper", "both --paper and --observations given",
                            "one source of observations", "");
    }
    RunObservationCalibration(o);
    return;
  }
  if (!o.paper) {
    throw MakeConfigError("lifeline calibrate", "--paper", "no observations given",
                          "--paper (fit to the published decode TPS) or --observations FILE.csv",
                          "run `lifeline calibrate --paper --device device_a`");
  }
  const DeviceSpec initial = ResolveDeviceSpec(o.device);
  const PaperReference ref = LoadPaperReference(o.reference.empty() ? DefaultPaperReferencePath() : std::filesystem::path(o.reference));
  std::vector<ModelArch> models;
  for (const auto& m : o.models) models.push_back(ResolveModelArch(m));
  const PaperCalibration pc = CalibratePaperDevice(initial, models, ref);
  const CalibrationResult& fit = pc.fit;

  reports::Table params;
  params.title = "Fitted parameters of " + initial.name;
  params.columns = {"parameter", "initial", "fitted"};
  for (auto p : PaperFitParams()) {
    DeviceSpec a = initial, b = fit.device;
    params.rows.push_back({DeviceParamKey(p), reports::Cell(DeviceParamRef(a, p), 9), reports::Cell(DeviceParamRef(b, p), 9)});
  }
  reports::Table res;
  res.title = "Residuals (model - published TPS)";
  res.columns = {"model", "plan", "context_tokens", "published_tps", "model_tps", "residual_tps"};
  for (size_t i = 0; i < pc.keys.size(); ++i) {
    res.rows.push_back({std::get<1>(pc.keys[i]), pc.plans[i], reports::Cell::Int(std::get<2>(pc.keys[i])),
                        reports::Cell(fit.predicted[i] - fit.residuals[i], 1), reports::Cell(fit.predicted[i], 3),
                        reports::Cell(fit.residuals[i], 3)});
  }
  int within = 0;
  for (double r : fit.residuals) within += std::fabs(r) <= 0.05 ? 1 : 0;
  res.notes.push_back(fmt::format("{} observations, rms {:.4f} TPS, max |residual| {:.4f} TPS, {} within the "
                                  "tables' rounding (0.05); {} iterations, converged: {}",
                                  fit.residuals.size(), fit.rms, fit.max_abs, within, fit.iterations,
                                  ConvergedText(fit)));
  std::cout << reports::ToText(params) << "\n" << reports::ToText(res);
  RefuseUnusableFit(fit, o.write);
  if (!o.residuals.empty()) reports::WriteFileAtomic(o.residuals, reports::ToCsv(res), "--residuals");
  if (!o.write.empty()) {
    DeviceSpec d = fit.device;
    // INT3/INT8 expert efficiencies that defaulted to INT4 follow the fitted INT4 value.
    if (initial.moe_expert_compute_int3_efficiency == initial.moe_expert_compute_int4_efficiency)
      d.moe_expert_compute_int3_efficiency = d.moe_expert_compute_int4_efficiency;
    if (initial.moe_expert_compute_int8_efficiency == initial.moe_expert_compute_int4_efficiency)
      d.moe_expert_compute_int8_efficiency = d.moe_expert_compute_int4_efficiency;
    const std::string note = fmt::format("fitted by `lifeline calibrate --paper` to the {} published decode TPS "
                                         "of this device (1k-32k rows; rms {:.4f}, max {:.4f} TPS)",
                                         fit.residuals.size(), fit.rms, fit.max_abs);
    for (auto p : PaperFitParams()) d.sources[DeviceParamKey(p)] = note;
    reports::WriteFileAtomic(o.write, DeviceSpecToYaml(d), "--write");
    std::cout << "wrote " << o.write << "\n";
  }
}

}  // namespace

void AddCalibrateCommand(CLI::App& app) {
  auto o = std::make_shared<CalibrateOptions>();
  CLI::App* sub = app.add_subcommand(
      "calibrate", "Fit a device's efficiencies and overheads by least squares to published or measured throughput.");
  sub->add_option("--device", o->device, "hwspec name or YAML path (starting point)")->capture_default_str();
  sub->add_flag("--paper", o->paper, "fit to the paper's published decode TPS for this device (1k-32k rows)");
  sub->add_option("--reference", o->reference, "published values CSV (default: shared reference)");
  sub->add_option("--models", o->models, "models whose published rows are fitted")->capture_default_str();
  sub->add_option("--write", o->write, "write the calibrated device YAML here");
  sub->add_option("--residuals", o->residuals, "write the residual table as CSV here");
  sub->add_option("--observations", o->observations,
                  "fit to this CSV instead: columns model,plan,context_tokens,tps [,ttft_s,prompt_tokens] "
                  "[,device,fidelity,fusion,batch] (rows of other devices are skipped)");
  sub->add_option("--fit", o->fit,
                  "parameters to fit with --observations, comma separated (default: those of --paper): "
                  "efficiency.memory, efficiency.compute, efficiency.attention_compute, "
                  "efficiency.moe_expert_compute_int{2,3,4,8}, overhead.dispatch_s, overhead.head_dispatch_s")
      ->delimiter(',');
  sub->callback([o] { RunCalibrate(*o); });
}

}  // namespace lifeline::cli
