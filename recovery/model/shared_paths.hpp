#pragma once
// Locations of the shared read-only inputs (models, data) the recovery
// harness uses by default.

#include <filesystem>

namespace lifeline::recovery {

// lifeline::SharedDir(): $LIFELINE_SHARED_DIR when set, else <source>/../shared.
std::filesystem::path RecoverySharedDir();
// <shared>/models/stories260k/stories260K.bin
std::filesystem::path Stories260kModelPath();
// <shared>/models/stories260k/tok512.bin
std::filesystem::path Stories260kTokenizerPath();
// <shared>/data/tinystories/tinystories_val_dev.txt
std::filesystem::path TinyStoriesValPath();

}  // namespace lifeline::recovery
