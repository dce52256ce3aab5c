// `lifeline paper`: regenerates the paper's decode-throughput tables.

#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <memory>

#include "experiments/commands.hpp"
#include "experiments/figures.hpp"
#include "experiments/paper/paper_report.hpp"
#include "reports/table.hpp"
#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"

namespace lifeline::cli {

namespace {

struct PaperOptions {
  std::string out = "out/paper";
  std::string reference;
  std::vector<std::string> devices = kPaperDevices;
  std::vector<std::string> models = kPaperModels;
  bool force = false;  // write into a non-empty directory that is not a previous paper output
};

// Marks a directory as `lifeline paper` output: its first line, then the files written.
constexpr const char* kManifestName = "manifest.txt";
constexpr const char* kManifestMarker = "# lifeline paper output";

// Refuses to write into a non-empty directory that no previous `lifeline paper`
// wrote, unless --force: its files of the same names would be replaced.
void CheckOutputDirectory(const std::filesystem::path& out, bool force) {
  std::error_code ec;
  if (!std::filesystem::is_directory(out, ec) || std::filesystem::is_empty(out, ec) || force) return;
  std::ifstream in(out / kManifestName);
  std::string first;
  if (in && std::getline(in, first) && first == kManifestMarker) return;
  throw MakeConfigError("--out", out.string(),
                        "the directory is not empty and holds no previous `lifeline paper` output (no " +
                            std::string(kManifestName) + " starting with '" + kManifestMarker + "')",
                        "a new or empty directory, or one a previous `lifeline paper` wrote",
                        "choose another --out, or pass --force to write into it anyway (files of the same names are "
                        "replaced)");
}

void CopyInput(const std::filesystem::path& src, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(src, dir / src.filename(), std::filesystem::copy_options::overwrite_existing);
}

void RunPaper(const PaperOptions& o) {
  const std::filesystem::path out(o.out);
  CheckOutputDirectory(out, o.force);
  CreateOutputDirectory(out, "--out");
  const std::filesystem::path ref_path = o.reference.empty() ? DefaultPaperReferencePath() : std::filesystem::path(o.reference);
  const PaperReference ref = LoadPaperReference(ref_path);
  std::vector<DeviceSpec> devices;
  for (const auto& d : o.devices) devices.push_back(ResolveDeviceSpec(d));
  std::vector<ModelArch> models;
  for (const auto& m : o.models) models.push_back(ResolveModelArch(m));

  const auto paper = ComputePaperRows(devices, models, kPaperContextsExtended, Fidelity::kPaper);
  const auto exact = ComputePaperRows(devices, models, kPaperContextsExtended, Fidelity::kExact);

  std::vector<std::filesystem::path> written;
  auto add = [&](const std::vector<std::filesystem::path>& w) { written.insert(written.end(), w.begin(), w.end()); };
  // The machine-readable contract.
  reports::WriteFileAtomic(out / "decode_tps.csv", reports::ToCsv(DecodeTpsTable(paper)));
  written.push_back(out / "decode_tps.csv");
  add(reports::WriteTable(DecodeTpsTable(exact), out, "decode_tps_exact"));
  const char* stems[2][2] = {{"table1_device_a", "table6_device_a"}, {"table2_device_b", "table7_device_b"}};
  for (size_t i = 0; i < devices.size(); ++i) {
    const std::string& dn = devices[i].name;
    const size_t slot = dn == "device_b" ? 1 : 0;
    const std::string s1 = devices.size() == 2 ? stems[slot][0] : "table_" + dn;
    const std::string s2 = devices.size() == 2 ? stems[slot][1] : "table_ext_" + dn;
    add(reports::WriteTable(PaperTable(fmt::format("Decode TPS on {} (1k-32k), paper value and difference", dn),
                                       paper, dn, kPaperContexts, ref),
                            out, s1));
    add(reports::WriteTable(PaperTable(fmt::format("Decode TPS on {} (512-32k, seven contexts)", dn), paper, dn,
                                       kPaperContextsExtended, ref),
                            out, s2));
  }
  add(reports::WriteTable(FidelityTable(paper, exact), out, "fidelity_comparison"));

  // Inputs beside outputs.
  for (const auto& d : o.devices) {
    const std::filesystem::path p = std::filesystem::is_regular_file(d) ? std::filesystem::path(d)
                                                                         : HwspecDir() / (d + ".yaml");
    CopyInput(p, out / "inputs");
  }
  for (const auto& m : o.models) {
    const std::filesystem::path p = std::filesystem::is_regular_file(m) ? std::filesystem::path(m)
                                                                         : ModelZooDir() / (m + ".yaml");
    if (std::filesystem::is_regular_file(p)) CopyInput(p, out / "inputs");
  }
  CopyInput(ref_path, out / "inputs");

  const PaperDeviation dev = ComparePaper(paper, ref);
  const PaperDeviation dev_exact = ComparePaper(exact, ref);
  std::string summary = fmt::format(
      "# lifeline paper\n\n"
      "Compared with the published values ({} device x model x context rows, 3 configurations each):\n\n"
      "| fidelity | max abs TPS diff | max abs Gain% diff (pp) | max abs Capture% diff (pp) | Capture% beyond the paper's rounding range (pp) |\n"
      "| --- | ---: | ---: | ---: | ---: |\n"
      "| paper | {:.3f} ({}) | {:.3f} | {:.3f} | {:.3f} |\n"
      "| exact | {:.3f} ({}) | {:.3f} | {:.3f} | {:.3f} |\n\n"
      "Tolerances: TPS 0.1, Gain% 0.15 pp, Capture% 0.3 pp. Contexts 512 and 2048 have no published value: "
      "they are predictions. Device efficiencies: {}.\n",
      dev.compared_rows, dev.max_tps_diff, dev.worst_tps, dev.max_gain_diff_pp, dev.max_capture_diff_pp,
      dev.max_capture_excess_pp, dev_exact.max_tps_diff, dev_exact.worst_tps, dev_exact.max_gain_diff_pp,
      dev_exact.max_capture_diff_pp, dev_exact.max_capture_excess_pp,
      "hwspec/device_a.yaml and hwspec/device_b.yaml, fitted by `lifeline calibrate --paper`");
  reports::WriteFileAtomic(out / "summary.md", summary);
  written.push_back(out / "summary.md");
  // Figures (figures/*.png, .svg, .gp, .dat) and index.html bundling them with the tables.
  add(WritePaperHtml(out, paper, exact, devices, models, ref));
  std::string manifest = std::string(kManifestMarker) + "\n";
  for (const auto& w : written) manifest += std::filesystem::relative(w, out).generic_string() + "\n";
  reports::WriteFileAtomic(out / kManifestName, manifest);

  std::cout << reports::ToText(PaperTable("Device A, paper fidelity (TPS, paper, diff)", paper, "device_a",
                                          kPaperContexts, ref));
  std::cout << "\n" << summary << "\nwrote " << written.size() << " files to " << out.string() << "/\n";
}

}  // namespace

void AddPaperCommand(CLI::App& app) {
  auto o = std::make_shared<PaperOptions>();
  CLI::App* sub = app.add_subcommand(
      "paper",
      "Regenerate the paper's decode-throughput tables (Tables 1, 2, 6, 7) for both devices and the three models, "
      "in paper and exact fidelity, with the published value and the difference beside each number.");
  sub->add_option("--out", o->out, "output directory")->capture_default_str();
  sub->add_option("--reference", o->reference,
                  "published values CSV (default: experiments/paper/reference/paper_decode_tps.csv in the checkout)");
  sub->add_option("--devices", o->devices, "device names in hwspec/ or YAML paths")->capture_default_str();
  sub->add_option("--models", o->models, "zoo names or YAML/config.json paths")->capture_default_str();
  sub->add_flag("--force", o->force,
                "write into a non-empty --out directory that holds no previous `lifeline paper` output "
                "(files of the same names are replaced)");
  sub->callback([o] { RunPaper(*o); });
}

}  // namespace lifeline::cli
