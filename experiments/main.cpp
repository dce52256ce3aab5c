// lifeline: decode-throughput roofline and accuracy-recovery harness for
// low-bit LLMs on edge devices. This executable does not link LibTorch, so
// roofline commands start in milliseconds; `lifeline recover …` is handed to
// lifeline-recover (the LibTorch executable built beside it).

#include <unistd.h>

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "common/cli_main.hpp"
#include "common/paths.hpp"
#include "experiments/commands.hpp"

namespace {

// Replaces this process by `lifeline-recover recover …` (same arguments).
int HandOverToRecover(int argc, char** argv) {
  const auto exe = lifeline::FindCompanionExecutable("lifeline-recover", "LIFELINE_RECOVER_BIN");
  if (!exe) {
    std::cerr << "error: `lifeline recover` runs lifeline-recover, the LibTorch part of lifeline, and this build has "
                 "none (no lifeline-recover beside the lifeline executable, and LIFELINE_RECOVER_BIN is unset or "
                 "names no file). Install LibTorch and rebuild: `scripts/setup.sh` (it installs libtorch-dev and "
                 "configures with LIFELINE_TORCH=AUTO), or configure with -DLIFELINE_TORCH=ON.\n";
    return 2;
  }
  std::vector<char*> args;
  args.push_back(const_cast<char*>("lifeline"));
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  lifeline::SetLibTorchChildEnvironment();
  execv(exe->c_str(), args.data());
  std::cerr << "error: cannot start " << exe->string() << ": " << std::strerror(errno) << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "recover") return HandOverToRecover(argc, argv);
  CLI::App app{
      "lifeline: how much faster does a model decode on a chip when part of it goes to 2 bits, "
      "and how much of the lost accuracy can be bought back?"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lifeline 0.1.0");
  lifeline::cli::AddPaperCommand(app);
  lifeline::cli::AddExplainCommand(app);
  lifeline::cli::AddCalibrateCommand(app);
  lifeline::cli::AddWhatifCommand(app);
  lifeline::cli::AddProbeCommand(app);
  lifeline::cli::AddGgufCommand(app);
  lifeline::cli::AddMeasureCommand(app);
  lifeline::cli::AddValidateCommand(app);
  lifeline::cli::AddSweepCommands(app);
  // Listed for --help; the command line is handed over before parsing.
  app.add_subcommand("recover",
                     "degrade (quantize, noise, dtype, bit flips) -> synthetic data -> recover (LoRA by KL, "
                     "LLM-QAT, SFT-LoRA) -> evaluate, deployed per a plan too (LibTorch; see "
                     "`lifeline recover --help`)");
  return lifeline::RunCliApp(app, argc, argv);
}
