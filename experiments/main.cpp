// lifeline: decode-throughput roofline and accuracy-recovery harness for
// low-bit LLMs on edge devices.

#include <iostream>

#include "experiments/commands.hpp"
#include "common/error.hpp"
#ifdef LIFELINE_HAVE_TORCH
#include "recovery/cli/recover_command.hpp"
#endif

int main(int argc, char** argv) {
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
#ifdef LIFELINE_HAVE_TORCH
  lifeline::recovery::AddRecoverCommand(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const lifeline::ConfigError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const lifeline::InfeasibleError& e) {
    std::cerr << "error: infeasible: " << e.what() << "\n";
    return 3;
  } catch (const lifeline::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: internal: " << e.what() << " (please report this as a bug)\n";
    return 70;
  }
  return 0;
}
