#include "recovery/eval/text_metrics.hpp"

#include <algorithm>
#include <fstream>
#include <numeric>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "common/error.hpp"
#include "common/strings.hpp"
#include "common/paths.hpp"

namespace lifeline::recovery {

std::filesystem::path DefaultSharedDir() { return lifeline::SharedDir(); }

std::vector<std::string> LoadStories(const std::filesystem::path& path, int64_t limit) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("{}: cannot open text file", path.string()));
  std::vector<std::string> stories;
  std::string line, current;
  auto flush = [&] {
    std::string t = Trim(current, " \t\r\n");
    if (!t.empty()) stories.push_back(std::move(t));
    current.clear();
  };
  while (std::getline(in, line)) {
    if (Trim(line, " \t\r\n").empty()) {
      flush();
      if (limit > 0 && static_cast<int64_t>(stories.size()) >= limit) return stories;
      continue;
    }
    if (!current.empty()) current += '\n';
    if (!line.empty() && line.back() == '\r') line.pop_back();
    current += line;
  }
  flush();
  if (limit > 0 && static_cast<int64_t>(stories.size()) > limit) stories.resize(limit);
  return stories;
}

std::vector<std::vector<int64_t>> TokenizeStories(const std::vector<std::string>& stories,
                                                  const Tokenizer& tokenizer,
                                                  int64_t max_tokens) {
  std::vector<std::vector<int64_t>> docs;
  docs.reserve(stories.size());
  for (const std::string& s : stories) {
    std::vector<int64_t> ids = tokenizer.Encode(s, /*add_bos=*/true);
    if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(max_tokens);
    docs.push_back(std::move(ids));
  }
  return docs;
}

TextMetrics EvaluateText(const std::vector<std::vector<int64_t>>& docs, const LogitsFn& model,
                         const LogitsFn* teacher, int64_t batch) {
  LIFELINE_CHECK(batch > 0, "batch must be positive");
  at::NoGradGuard no_grad;
  std::vector<size_t> order;
  for (size_t i = 0; i < docs.size(); ++i)
    if (docs[i].size() >= 2) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return docs[a].size() < docs[b].size(); });

  TextMetrics m;
  m.has_teacher = teacher != nullptr;
  double nll = 0.0, kl = 0.0, agree = 0.0, teacher_nll = 0.0;
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(batch)) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(batch));
    const int64_t b = static_cast<int64_t>(end - start);
    int64_t t_max = 0;
    for (size_t k = start; k < end; ++k)
      t_max = std::max<int64_t>(t_max, static_cast<int64_t>(docs[order[k]].size()));
    at::Tensor ids = at::zeros({b, t_max}, at::kLong);    // (B, T)
    at::Tensor mask = at::zeros({b, t_max - 1}, at::kFloat);  // (B, T-1) 1 = predicted token
    auto ids_a = ids.accessor<int64_t, 2>();
    auto mask_a = mask.accessor<float, 2>();
    for (int64_t r = 0; r < b; ++r) {
      const auto& d = docs[order[start + static_cast<size_t>(r)]];
      for (size_t t = 0; t < d.size(); ++t) ids_a[r][static_cast<int64_t>(t)] = d[t];
      for (size_t t = 0; t + 1 < d.size(); ++t) mask_a[r][static_cast<int64_t>(t)] = 1.0f;
    }
    at::Tensor logits = model(ids);  // (B, T, V)
    LIFELINE_CHECK(logits.dim() == 3 && logits.size(0) == b && logits.size(1) == t_max,
                   "LogitsFn must return (B, T, V) logits");
    const auto dev = logits.device();
    at::Tensor target = ids.slice(1, 1).to(dev);                      // (B, T-1)
    at::Tensor msk = mask.to(dev) > 0;                                // (B, T-1) bool
    // Sums over predicted positions only (where, not a product with the mask,
    // so whatever the model returns at padding cannot leak in as NaN).
    auto masked_sum = [&](const at::Tensor& x) {
      return at::where(msk, x, at::zeros({}, x.options())).sum().item<double>();
    };
    at::Tensor logp = logits.slice(1, 0, t_max - 1).to(at::kFloat).log_softmax(-1);  // (B, T-1, V)
    at::Tensor tok_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1);        // (B, T-1)
    nll -= masked_sum(tok_logp);
    m.tokens += static_cast<int64_t>(mask.sum().item<double>());
    m.documents += b;
    if (teacher) {
      at::Tensor tlogits = (*teacher)(ids);
      LIFELINE_CHECK(tlogits.sizes() == logits.sizes(), "teacher and student logits differ in shape");
      at::Tensor tlogp = tlogits.slice(1, 0, t_max - 1).to(dev).to(at::kFloat).log_softmax(-1);
      at::Tensor tp = tlogp.exp();                                    // (B, T-1, V)
      // Terms with p_teacher = 0 contribute 0 (avoids 0 * -inf = NaN).
      at::Tensor kl_tok = at::where(tp > 0, tp * (tlogp - logp), at::zeros({}, tp.options()))
                              .sum(-1);  // (B, T-1)
      kl += masked_sum(kl_tok);
      at::Tensor same = (tlogp.argmax(-1) == logp.argmax(-1)).to(at::kFloat);  // (B, T-1)
      agree += masked_sum(same);
      teacher_nll -= masked_sum(tlogp.gather(-1, target.unsqueeze(-1)).squeeze(-1));
    }
  }
  if (m.tokens > 0) {
    const double n = static_cast<double>(m.tokens);
    m.nll_per_token = nll / n;
    m.perplexity = std::exp(m.nll_per_token);
    if (teacher) {
      m.kl_per_token = kl / n;
      m.top1_agreement = agree / n;
      m.teacher_nll_per_token = teacher_nll / n;
      m.teacher_perplexity = std::exp(m.teacher_nll_per_token);
    }
  }
  return m;
}

}  // namespace lifeline::recovery
