#pragma once
// Sweep matrices (experiments/*.yaml): axes, their cartesian product,
// include/exclude rules and named presets, expanded into cells with stable ids.
//
// Schema (strict keys; every error names file:line:col and the key path):
//   name: paper                       # optional; default: the file's stem
//   description: "..."                # optional
//   throughput:                       # roofline cells (microseconds each)
//     axes: {model: [...], device: [...], context: [...], plan: [...],
//            fidelity: [exact], fusion: [paper], batch: [1]}   # last three optional (defaults shown)
//     include: [{axis: value-or-list, ...}]  # extra cells; unnamed axes take every value
//     exclude: [{axis: value-or-list, ...}]  # cells matching every named axis are removed
//   recovery:                         # `lifeline recover` cells (minutes each)
//     fixed: {recipe key: value}      # held constant in every cell
//     axes: {recipe key: [values]}    # swept (bits, group, rank, samples, data, seed, steps, ...)
//     include / exclude               # as above; keys are recipe keys
//     report: {model: stories260k, plan: "w4w{bits}-gateup"}  # labels joining reports;
//                                     # {key} is replaced by the cell's recipe value
//   presets:                          # `--preset NAME`: replaces the named keys of a section
//     smoke: {throughput: {axes: {context: [1024]}}, recovery: {fixed: {steps: 20}}}
//
// Cell id: the first 16 hex digits (64 bits) of SHA-256 over the cell's
// canonical JSON (nlohmann::json::dump(): keys sorted, no spaces, integral
// numbers written as integers, every default filled in). Report labels are
// not part of the id, so renaming a label does not redo a cell. A throughput
// cell's inputs include `input_sha256`: the SHA-256 of the model, device and
// plan files it reads (zoo/hwspec YAML, a YAML or HF config.json path), so
// editing one of those files makes new cells instead of reusing old results.
//
// Limits: `name:` (and the file stem it defaults to) becomes a folder under
// out/, so it is one plain path component; a matrix expands to at most
// kMaxMatrixCells cells.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

namespace lifeline::sweep {

// kMeasured: a decode timed on llama.cpp (`lifeline measure` / `validate`).
enum class CellKind { kThroughput, kRecovery, kMeasured };
std::string CellKindName(CellKind k);
CellKind ParseCellKind(const std::string& s);

struct SweepCell {
  std::string id;           // 16 hex digits of SHA-256(canonical)
  CellKind kind = CellKind::kThroughput;
  nlohmann::json inputs;    // resolved inputs: the cell's identity
  nlohmann::json labels;    // report labels (recovery: model, plan); not hashed
  std::string canonical;    // the hashed text: inputs.dump()
};

struct Matrix {
  std::string name;         // `name:` or the file stem
  std::string description;  // `description:` or ""
  std::string file;         // source path ("" for strings)
  std::string preset;       // applied preset, "" for none
  std::vector<SweepCell> cells;  // throughput cells, then recovery cells, in product order
};

// Most cells one matrix may expand to (before exclude rules): each cell is
// held in memory by the runner and the dry run (about 5 KB each with the dry
// run's table: 200,000 cells take ~1 GB).
constexpr uint64_t kMaxMatrixCells = 200000;

// The file a throughput model/device/plan value is read from: the path
// itself, <dir>/config.json for an HF directory, the zoo or hwspec YAML for a
// name; "" for a built-in plan preset.
std::filesystem::path CellInputFile(const std::string& axis, const std::string& value);

// Throws ConfigError unless `name` is one plain path component (letters,
// digits, '.', '_', '-'; not starting with '.'). `where`/`key` locate it.
void CheckMatrixName(const std::string& name, const std::string& where, const std::string& key);

// Throughput axes, in product order, and their defaults.
const std::vector<std::string>& ThroughputAxes();
// Recipe keys a recovery cell may set (those of `lifeline recover` except
// out, resume and save_data, which the runner manages).
const std::vector<std::string>& RecoveryKeys();

// The canonical id of resolved inputs.
std::string CellId(const nlohmann::json& inputs);

// Parses and expands a matrix. Throws ConfigError on bad input: unknown keys
// or axes (with did-you-mean), empty axes or products, include/exclude
// conflicts, exclude rules matching nothing, unknown models/devices/plans,
// unknown presets.
Matrix ParseMatrix(const YAML::Node& root, const std::string& file, const std::string& preset = "");
Matrix LoadMatrix(const std::filesystem::path& path, const std::string& preset = "");

}  // namespace lifeline::sweep
