#pragma once
// Score-driven pair merging shared by the llama2.c and sentencepiece BPE
// encoders: repeatedly merge the adjacent pair whose merged piece has the
// best score (leftmost pair on ties) until no adjacent pair merges.
//
// llama2.c's run.c rescans the whole sequence for every merge (O(n^2) per
// text, seconds for a few-shot prompt); this keeps candidate pairs in a heap
// with lazy invalidation, O(n log n), and yields exactly the same sequence:
// the heap's top is the best score, ties broken by the left symbol's original
// position, which orders the surviving symbols left to right.

#include <optional>
#include <queue>
#include <utility>
#include <vector>

namespace lifeline::recovery::internal {

// `merge(a, b)` returns the merged symbol and its score, or nullopt when the
// pair does not merge.
template <typename Sym, typename MergeFn>
std::vector<Sym> MergeByBestScore(std::vector<Sym> symbols, MergeFn merge) {
  const int n = static_cast<int>(symbols.size());
  if (n < 2) return symbols;
  std::vector<int> prev(n), next(n);
  std::vector<bool> alive(n, true);
  std::vector<int> version(n, 0);  // bumped whenever a symbol changes
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    float score;
    int left, right;
    int left_version, right_version;
  };
  auto worse = [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;  // leftmost first among equal scores
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heap(worse);
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    if (auto m = merge(symbols[left], symbols[right]))
      heap.push({m->second, left, right, version[left], version[right]});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
        version[c.left] != c.left_version || version[c.right] != c.right_version)
      continue;  // stale
    auto m = merge(symbols[c.left], symbols[c.right]);
    symbols[c.left] = std::move(m->first);
    ++version[c.left];
    alive[c.right] = false;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    consider(prev[c.left], c.left);
    consider(c.left, next[c.left]);
  }
  std::vector<Sym> out;
  for (int i = 0; i >= 0; i = next[i]) out.push_back(std::move(symbols[i]));
  return out;
}

}  // namespace lifeline::recovery::internal
