#pragma once
// Where lifeline finds its data at run time. Each can be overridden by an
// environment variable so installed binaries and tests work from anywhere.

#include <filesystem>

namespace lifeline {

// The source tree lifeline was built from.
std::filesystem::path SourceDir();
// LIFELINE_MODEL_ZOO_DIR or <source>/model_zoo.
std::filesystem::path ModelZooDir();
// LIFELINE_HWSPEC_DIR or <source>/hwspec.
std::filesystem::path HwspecDir();
// LIFELINE_SHARED_DIR or <source>/../shared: downloadable data only (the stories260K
// weights, the evaluation sets). The paper reference lives in the repository.
std::filesystem::path SharedDir();

}  // namespace lifeline
