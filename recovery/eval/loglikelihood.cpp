#include "recovery/eval/loglikelihood.hpp"

#include <algorithm>
#include <map>
#include <numeric>

#include <ATen/ATen.h>

#include "common/error.hpp"

namespace lifeline::recovery {

std::pair<std::vector<int64_t>, std::vector<int64_t>> TokenizeRequest(
    const LoglikelihoodRequest& request, const Tokenizer& tokenizer, bool add_bos) {
  std::string context = request.context;
  std::string continuation = request.continuation;
  const size_t kept = context.find_last_not_of(" ");
  const size_t n_spaces = kept == std::string::npos ? context.size() : context.size() - kept - 1;
  if (n_spaces > 0) {
    continuation = context.substr(context.size() - n_spaces) + continuation;
    context.resize(context.size() - n_spaces);
  }
  const bool bos = add_bos && tokenizer.BosId() >= 0;
  if (context.empty()) {
    const int64_t start = tokenizer.BosId() >= 0 ? tokenizer.BosId() : tokenizer.EosId();
    LIFELINE_CHECK(start >= 0, "an empty context needs a BOS or EOS token");
    std::vector<int64_t> cont = tokenizer.Encode(continuation, false);
    return {{start}, cont};
  }
  std::vector<int64_t> ctx = tokenizer.Encode(context, bos);
  std::vector<int64_t> whole = tokenizer.Encode(context + continuation, bos);
  if (ctx.size() >= whole.size()) {  // score at least one token
    std::vector<int64_t> cont{whole.back()};
    whole.pop_back();
    return {whole, cont};
  }
  std::vector<int64_t> cont(whole.begin() + static_cast<std::ptrdiff_t>(ctx.size()), whole.end());
  return {ctx, cont};
}

std::vector<LoglikelihoodResult> ComputeLoglikelihoodsFromIds(
    const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>& requests,
    const LogitsFn& model, const LoglikelihoodOptions& options) {
  LIFELINE_CHECK(options.batch > 0 && options.max_length > 0, "batch and max_length must be > 0");
  at::NoGradGuard no_grad;
  // Model input per request: (context + continuation)[-(max_length + 1):][:-1].
  struct Row {
    std::vector<int64_t> input;  // fed to the model
    int64_t n_cont = 0;          // continuation tokens scored (the input's tail predicts them)
    std::vector<int64_t> cont;   // continuation ids
  };
  std::vector<Row> rows(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& [ctx, cont] = requests[i];
    LIFELINE_CHECK(!ctx.empty(), "a request needs at least one context token");
    std::vector<int64_t> full = ctx;
    full.insert(full.end(), cont.begin(), cont.end());
    const size_t keep = static_cast<size_t>(options.max_length) + 1;
    if (full.size() > keep) full.erase(full.begin(), full.end() - static_cast<std::ptrdiff_t>(keep));
    full.pop_back();
    rows[i].input = std::move(full);
    rows[i].cont = cont;
    rows[i].n_cont = std::min<int64_t>(static_cast<int64_t>(cont.size()),
                                       static_cast<int64_t>(rows[i].input.size()));
  }
  // Requests with the same model input share one forward pass (e.g. the four
  // one-token " A".." D" continuations of an MMLU question).
  std::vector<std::vector<size_t>> groups;  // request indices per distinct input
  {
    std::map<std::vector<int64_t>, size_t> seen;
    for (size_t i = 0; i < rows.size(); ++i) {
      auto [it, inserted] = seen.emplace(rows[i].input, groups.size());
      if (inserted) groups.emplace_back();
      groups[it->second].push_back(i);
    }
  }
  auto input_of = [&](size_t g) -> const std::vector<int64_t>& { return rows[groups[g][0]].input; };
  std::vector<size_t> order(groups.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return input_of(a).size() > input_of(b).size();
  });

  std::vector<LoglikelihoodResult> results(requests.size());
  const size_t batch = static_cast<size_t>(options.batch);
  for (size_t start = 0; start < order.size(); start += batch) {
    const size_t end = std::min(order.size(), start + batch);
    const int64_t b = static_cast<int64_t>(end - start);
    const int64_t t_max = static_cast<int64_t>(input_of(order[start]).size());
    at::Tensor ids = at::zeros({b, t_max}, at::kLong);  // (B, T)
    auto ids_a = ids.accessor<int64_t, 2>();
    for (int64_t r = 0; r < b; ++r) {
      const auto& in = input_of(order[start + static_cast<size_t>(r)]);
      for (size_t t = 0; t < in.size(); ++t) ids_a[r][static_cast<int64_t>(t)] = in[t];
    }
    at::Tensor logits = model(ids);  // (B, T, V)
    LIFELINE_CHECK(logits.dim() == 3 && logits.size(0) == b && logits.size(1) == t_max,
                   "LogitsFn must return (B, T, V) logits");
    for (int64_t r = 0; r < b; ++r) {
      for (const size_t idx : groups[order[start + static_cast<size_t>(r)]]) {
        const Row& row = rows[idx];
        LoglikelihoodResult& res = results[idx];
        res.tokens = row.n_cont;
        if (row.n_cont == 0) {
          res.is_greedy = true;
          continue;
        }
        const int64_t len = static_cast<int64_t>(row.input.size());
        at::Tensor lp = logits[r].slice(0, len - row.n_cont, len).to(at::kCPU).to(at::kFloat)
                            .log_softmax(-1);  // (n_cont, V)
        at::Tensor target = at::from_blob(const_cast<int64_t*>(row.cont.data()) +
                                              (row.cont.size() - static_cast<size_t>(row.n_cont)),
                                          {row.n_cont}, at::kLong)
                                .clone();  // (n_cont)
        res.logprob = lp.gather(1, target.unsqueeze(1)).sum().item<double>();
        res.is_greedy = lp.argmax(1).eq(target).all().item<bool>();
      }
    }
  }
  return results;
}

std::vector<LoglikelihoodResult> ComputeLoglikelihoods(
    const std::vector<LoglikelihoodRequest>& requests, const Tokenizer& tokenizer,
    const LogitsFn& model, const LoglikelihoodOptions& options) {
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> tokenized;
  tokenized.reserve(requests.size());
  for (const auto& r : requests) tokenized.push_back(TokenizeRequest(r, tokenizer, options.add_bos));
  return ComputeLoglikelihoodsFromIds(tokenized, model, options);
}

}  // namespace lifeline::recovery
