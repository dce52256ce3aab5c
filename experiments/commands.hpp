#pragma once
// Subcommands of the `lifeline` binary. Each registers itself on the app; its
// callback throws lifeline::Error subclasses on bad input (main prints them).

#include <CLI/CLI.hpp>

#include "common/progress.hpp"  // StderrIsTty, ProgressLine

namespace lifeline::cli {

void AddPaperCommand(CLI::App& app);
void AddExplainCommand(CLI::App& app);
void AddCalibrateCommand(CLI::App& app);
void AddWhatifCommand(CLI::App& app);
void AddProbeCommand(CLI::App& app);
// measure and validate (experiments/measure_command.cpp): llama.cpp measurements.
void AddMeasureCommand(CLI::App& app);
void AddValidateCommand(CLI::App& app);
// gguf (experiments/gguf_command.cpp): a model written as a GGUF file for llama.cpp.
void AddGgufCommand(CLI::App& app);
// sweep, run-cell and report (experiments/sweep_command.cpp).
void AddSweepCommands(CLI::App& app);

}  // namespace lifeline::cli
