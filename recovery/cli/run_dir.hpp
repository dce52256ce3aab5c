#pragma once
// The output directory of a `recover` run: checks before any work, creation,
// JSON files written atomically, and the recipe fingerprint that --resume
// compares against.

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "recovery/cli/recipe.hpp"

namespace lifeline::recovery {

// Writes `j` (indented) to `path` atomically.
void WriteJson(const std::filesystem::path& path, const nlohmann::json& j);

// --out must be a directory (or not exist yet): checked before any work.
void CheckOutPath(const std::string& out);
// Creates --out (ConfigError naming --out when it cannot).
void CreateOutDir(const std::string& out);

// OUT/recipe_fingerprint.json: the recipe keys that decide the training
// result. A fresh run records it; --resume compares against it and refuses
// to continue a run whose recipe changed.
void CheckOrRecordFingerprint(const RecoverRecipe& r);

}  // namespace lifeline::recovery
