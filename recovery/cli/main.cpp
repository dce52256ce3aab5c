// lifeline-recover: the LibTorch part of lifeline. Users type
// `lifeline recover …`; the light `lifeline` executable (no LibTorch) hands
// the command line to this one. `lifeline run-cell` starts it for the
// recovery cells of a sweep (`recovery-cell`, not listed in --help).

#include "common/cli_main.hpp"
#include "recovery/model/allocator.hpp"
#include "recovery/cli/recover_command.hpp"
#include "recovery/cli/recovery_cell.hpp"

int main(int argc, char** argv) {
  lifeline::recovery::TuneAllocatorForTraining();
  CLI::App app{"lifeline recover: degrade -> synthetic data -> recover (LoRA by KL, LLM-QAT, SFT-LoRA) -> evaluate (LibTorch)", "lifeline"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lifeline-recover 0.1.0");
  lifeline::recovery::AddRecoverCommand(app);
  lifeline::recovery::AddRecoveryCellCommand(app);
  return lifeline::RunCliApp(app, argc, argv);
}
