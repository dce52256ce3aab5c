#pragma once
// glibc malloc settings for LibTorch training and generation: tensors up to
// 32 MiB come from the heap instead of a fresh mmap each time, and up to
// 256 MiB of free heap is kept instead of being returned to the kernel after
// every step. A training step allocates and frees the same tensors every
// step, so without this every step page-faults its activations in again:
// stories260K's step (8 x 256 tokens) went from 832 to 260 ms, 1 thread, on
// the 2-core VM where page faults are expensive (tests/bench/recovery, README
// Benchmarks). Peak RSS rose by at most 5%.

namespace lifeline::recovery {

void TuneAllocatorForTraining();

}  // namespace lifeline::recovery
