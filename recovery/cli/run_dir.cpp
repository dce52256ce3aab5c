#include "recovery/cli/run_dir.hpp"

#include <fstream>
#include <vector>

#include <fmt/format.h>

#include "common/atomic_file.hpp"
#include "common/error.hpp"

namespace lifeline::recovery {

namespace fs = std::filesystem;

void WriteJson(const fs::path& path, const nlohmann::json& j) { WriteFileAtomic(path, j.dump(2) + "\n"); }

// --out must be a directory (or not exist yet): checked before any work.
void CheckOutPath(const std::string& out) {
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec))
    throw MakeConfigError("--out", "out", fmt::format("'{}' exists and is not a directory", out),
                          "a directory path", "choose another --out");
}

void CreateOutDir(const std::string& out) {
  CheckOutPath(out);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec)
    throw MakeConfigError("--out", "out", fmt::format("cannot create directory '{}': {}", out, ec.message()),
                          "a writable directory path", "choose another --out");
}

// OUT/recipe_fingerprint.json: the recipe keys that decide the training
// result. A fresh run records it; --resume compares against it and refuses
// to continue a run whose recipe changed.
void CheckOrRecordFingerprint(const RecoverRecipe& r) {
  const fs::path file = fs::path(r.out) / "recipe_fingerprint.json";
  const nlohmann::json now = TrainingFingerprint(r);
  std::error_code ec;
  if (r.resume) {
    if (!fs::exists(file, ec)) {
      if (fs::exists(fs::path(r.out) / "train_state", ec))
        throw MakeConfigError("--resume", "resume",
                              fmt::format("{} is missing, so the recipe of the training in {} is unknown",
                                          file.string(), (fs::path(r.out) / "train_state").string()),
                              "an output directory written by the run being resumed",
                              "rerun without --resume (with --overwrite) to train from the start");
    } else {
      nlohmann::json before;
      try {
        std::ifstream in(file);
        before = nlohmann::json::parse(in);
      } catch (const nlohmann::json::exception& e) {
        throw MakeConfigError(file.string(), "(root)", fmt::format("not valid JSON ({})", e.what()),
                              "the fingerprint a recover run writes",
                              "rerun without --resume (with --overwrite) to train from the start");
      }
      std::vector<std::string> changed;
      for (const auto& [k, v] : now.items()) {
        if (!before.contains(k)) {
          changed.push_back(fmt::format("{} (unrecorded -> {})", k, v.dump()));
        } else if (before[k] != v) {
          changed.push_back(fmt::format("{} ({} -> {})", k, before[k].dump(), v.dump()));
        }
      }
      if (!changed.empty())
        throw MakeConfigError("--resume", "resume",
                              fmt::format("the recipe changed since the run in {} started: {}", r.out,
                                          fmt::join(changed, ", ")),
                              "the same training settings as the run being resumed",
                              fmt::format("rerun with the recorded values ({}), or without --resume "
                                          "(with --overwrite) to train from the start",
                                          file.string()));
      return;
    }
  }
  WriteJson(file, now);
}

}  // namespace lifeline::recovery
