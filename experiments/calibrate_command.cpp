// `lifeline calibrate`: fit a device's efficiencies and overheads.

#include <fmt/format.h>

#include <cmath>
#include <iostream>
#include <memory>

#include "experiments/commands.hpp"
#include "reports/table.hpp"
#include "roofline/common/error.hpp"
#include "roofline/common/paths.hpp"
#include "roofline/eval/paper.hpp"

namespace lifeline::cli {
namespace {

struct CalibrateOptions {
  std::string device = "device_a";
  bool paper = false;
  std::string reference;
  std::string write;
  std::string residuals;
  std::vector<std::string> models = kPaperModels;
};

void RunCalibrate(const CalibrateOptions& o) {
  if (!o.paper) {
    throw MakeConfigError("lifeline calibrate", "--paper", "no observations given",
                          "--paper (fit to the published decode TPS)", "run `lifeline calibrate --paper --device device_a`");
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
                                  fit.converged ? "yes" : "no"));
  std::cout << reports::ToText(params) << "\n" << reports::ToText(res);
  if (!o.residuals.empty()) reports::WriteFileAtomic(o.residuals, reports::ToCsv(res));
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
    reports::WriteFileAtomic(o.write, DeviceSpecToYaml(d));
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
  sub->callback([o] { RunCalibrate(*o); });
}

}  // namespace lifeline::cli
