#pragma once
// The one place that turns a command's outcome into an exit status, shared
// by `lifeline` and `lifeline-recover`:
//   0 done (and --help, --version); 1 lifeline::Error; 2 bad input: a
//   ConfigError (the message names the file/line/key or flag) or a command
//   line CLI11 rejects (unknown flag, value out of range); 3 InfeasibleError;
//   70 anything else (a bug).

#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>

#include "common/error.hpp"

namespace lifeline {

inline int RunCliApp(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help, the version, or the error with the usage hint
    return code == 0 ? 0 : 2;
  } catch (const ConfigError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const InfeasibleError& e) {
    std::cerr << "error: infeasible: " << e.what() << "\n";
    return 3;
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: internal: " << e.what() << " (please report this as a bug)\n";
    return 70;
  }
  return 0;
}

}  // namespace lifeline
