#include "recovery/model/allocator.hpp"

#include <malloc.h>

namespace lifeline::recovery {

namespace {
constexpr int kMmapThresholdBytes = 32 << 20;  // glibc's largest (HEAP_MAX / 2 on 64-bit)
constexpr int kTrimThresholdBytes = 256 << 20;
}  // namespace

void TuneAllocatorForTraining() {
  mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes);
  mallopt(M_TRIM_THRESHOLD, kTrimThresholdBytes);
}

}  // namespace lifeline::recovery
