#include "recovery/model/shared_paths.hpp"

#include "common/paths.hpp"

namespace lifeline::recovery {

std::filesystem::path RecoverySharedDir() { return lifeline::SharedDir(); }

std::filesystem::path Stories260kModelPath() {
  return RecoverySharedDir() / "models" / "stories260k" / "stories260K.bin";
}

std::filesystem::path Stories260kTokenizerPath() {
  return RecoverySharedDir() / "models" / "stories260k" / "tok512.bin";
}

std::filesystem::path TinyStoriesValPath() {
  return RecoverySharedDir() / "data" / "tinystories" / "tinystories_val_dev.txt";
}

}  // namespace lifeline::recovery
