// Recovery cells: run by lifeline-recover (the LibTorch executable) as a
// child process, so this library and `lifeline` never link LibTorch.

#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <iterator>

#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/subprocess.hpp"
#include "experiments/sweep/cell_exec.hpp"
#include "experiments/sweep/sha256.hpp"

namespace lifeline::sweep {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::optional<fs::path> RecoverExecutable() {
  return FindCompanionExecutable("lifeline-recover", "LIFELINE_RECOVER_BIN");
}

// The last `n` lines of a process's output, for an error message.
std::string Tail(const std::string& text, int n) {
  size_t pos = text.size();
  while (pos > 0 && (text[pos - 1] == '\n' || text[pos - 1] == ' ')) --pos;
  size_t end = pos;
  for (int i = 0; i < n && pos > 0; ++i) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) {
      pos = 0;
      break;
    }
  }
  return text.substr(pos == 0 ? 0 : pos + 1, end - (pos == 0 ? 0 : pos + 1));
}

}  // namespace

bool RecoveryCellsAvailable() { return RecoverExecutable().has_value(); }

CellResult RunRecoveryCell(const json& inputs, const fs::path& work_dir) {
  const auto t0 = std::chrono::steady_clock::now();
  CellResult r;
  r.outputs = nullptr;
  const auto exe = RecoverExecutable();
  if (!exe) {
    r.status = CellStatus::kFailed;
    r.error =
        "recovery cells run in lifeline-recover, the LibTorch part of lifeline, and this build has none (configured "
        "with LIFELINE_TORCH=OFF or without LibTorch, or LIFELINE_RECOVER_BIN names no file): run scripts/setup.sh "
        "(it installs libtorch-dev) or configure with -DLIFELINE_TORCH=ON, rebuild and rerun the sweep: this cell "
        "will be retried";
    return r;
  }
  try {
    const fs::path inputs_file = work_dir / "cell_inputs.json";
    const fs::path result_file = work_dir / "cell_result.json";
    fs::remove(result_file);
    WriteFileAtomic(inputs_file, inputs.dump(2) + "\n");  // creates the work directory
    // The child logs into the cell's directory and dies with this process
    // (a killed runner leaves no orphan training).
    const fs::path log = work_dir / "lifeline-recover.log";
    SpawnOptions so;
    so.log = log;
    so.die_with_parent = true;
    so.env_defaults = LibTorchChildEnvironment();
    const pid_t pid = SpawnProcess({exe->string(), "recovery-cell", "--inputs", inputs_file.string(), "--work-dir",
                                    work_dir.string(), "--result", result_file.string()},
                                   so);
    const ProcessExit ended = WaitProcess(pid);
    std::ifstream in(result_file);
    if (ended.signaled || ended.code != 0 || !in) {
      std::ifstream lf(log);
      const std::string text((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
      r.status = CellStatus::kFailed;
      r.error = fmt::format("{} recovery-cell {} without a result; last lines of {}:\n{}", exe->string(),
                            ended.Describe(), log.string(), Tail(text, 5));
      return r;
    }
    const json res = json::parse(in);
    const std::string status = res.at("status").get<std::string>();
    if (status == "done") {
      r.status = CellStatus::kDone;
      r.outputs = res.at("outputs");
      if (res.contains("seed")) r.seed = res.at("seed").get<int64_t>();
      for (const auto& f : res.value("input_files", json::array())) {
        const std::string path = f.get<std::string>();
        std::error_code ec;
        if (fs::is_regular_file(path, ec)) r.checksums[path] = Sha256File(path);
      }
    } else {
      r.status = status == "infeasible" ? CellStatus::kInfeasible : CellStatus::kFailed;
      r.error = res.value("error", std::string("no message"));
    }
  } catch (const std::exception& e) {
    r.status = CellStatus::kFailed;
    r.error = std::string("recovery cell: ") + e.what();
    r.outputs = nullptr;
  }
  r.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace lifeline::sweep
