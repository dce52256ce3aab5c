#pragma once
// The one thing evaluators need from a model: next-token logits for a batch
// of token sequences.

#include <functional>

#include <ATen/core/Tensor.h>

namespace lifeline::recovery {

// ids: (B, T) int64 on any device. Returns logits (B, T, V) float32, where
// logits[b, t] scores the token at position t + 1.
using LogitsFn = std::function<at::Tensor(const at::Tensor& ids)>;

}  // namespace lifeline::recovery
