#include "experiments/sweep/methods_table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>

namespace lifeline::sweep {

using nlohmann::json;
using reports::Cell;
using reports::Table;

namespace {

std::string Join(const json& list, const char* sep) {
  std::string out;
  for (const auto& v : list) out += (out.empty() ? "" : sep) + (v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

// Methods in the order the papers list them; others after, by name.
int MethodRank(const std::string& m) {
  if (m == "recover-lora") return 0;
  if (m == "llm-qat") return 1;
  if (m == "sft-lora") return 2;
  return 3;
}

const json& Recipe(const CellRow& r) {
  static const json kEmpty = json::object();
  return r.outputs.is_object() && r.outputs.contains("recipe") ? r.outputs["recipe"] : kEmpty;
}

std::string Method(const CellRow& r) {
  return r.outputs.is_object() && r.outputs.contains("method") ? r.outputs["method"].get<std::string>() : "";
}

}  // namespace

std::string DegradationLabel(const json& recipe) {
  if (!recipe.contains("degrade")) return "";
  std::string out;
  for (const auto& k : recipe["degrade"]) {
    const std::string kind = k.get<std::string>();
    std::string part = kind;
    if (kind == "quant") {
      part = fmt::format("quant int{} g{} {}", recipe.value("bits", 0), recipe.value("group", 0),
                         recipe.value("scheme", std::string()));
    } else if (kind == "noise") {
      const double abs_l2 = recipe.value("noise_l2", 0.0);
      part = abs_l2 > 0 ? fmt::format("noise l2 {:g}", abs_l2)
                        : fmt::format("noise rel_l2 {:g}", recipe.value("noise_rel_l2", 0.0));
    } else if (kind == "dtype") {
      part = "dtype " + recipe.value("dtype", std::string());
    } else if (kind == "bitflip") {
      part = fmt::format("bitflip rate {:g}", recipe.value("bitflip_rate", 0.0));
    }
    out += (out.empty() ? "" : " + ") + part;
  }
  return out;
}

std::optional<Table> MethodsTable(const std::vector<const CellRow*>& recovery) {
  std::set<std::string> methods, degradations;
  std::vector<std::string> metrics = {"perplexity"};
  for (const CellRow* r : recovery) {
    methods.insert(Method(*r));
    degradations.insert(DegradationLabel(Recipe(*r)) + "|" + Join(Recipe(*r).value("layers", json::array()), ","));
    if (!r->outputs.is_object() || !r->outputs.contains("metrics")) continue;
    for (const auto& [k, v] : r->outputs["metrics"].items()) {
      if (std::find(metrics.begin(), metrics.end(), k) == metrics.end()) metrics.push_back(k);
    }
  }
  if (methods.size() < 2 && degradations.size() < 2) return std::nullopt;

  std::vector<const CellRow*> rows = recovery;
  auto key = [](const CellRow* r) {
    const json& rc = Recipe(*r);
    return std::make_tuple(DegradationLabel(rc), Join(rc.value("layers", json::array()), ","), MethodRank(Method(*r)),
                           Method(*r), r->id);
  };
  std::stable_sort(rows.begin(), rows.end(), [&](const CellRow* a, const CellRow* b) { return key(a) < key(b); });

  Table t;
  t.title = "Recovery methods x degradations: AR% per metric and task, trainable parameters, training-set size";
  t.columns = {"degradation", "layers", "method", "data", "trainable_params", "train_tokens"};
  for (const auto& m : metrics) t.columns.push_back(m + "_ar_pct");
  t.columns.push_back("cell");
  for (const CellRow* r : rows) {
    const json& rc = Recipe(*r);
    std::vector<Cell> row;
    for (std::string text : {DegradationLabel(rc), Join(rc.value("layers", json::array()), ","), Method(*r),
                             rc.value("data", std::string())})
      row.emplace_back(std::move(text));
    for (const char* k : {"trainable_params", "train_tokens"}) {
      const bool has = r->outputs.is_object() && r->outputs.contains(k) && r->outputs[k].is_number();
      row.push_back(has ? Cell(r->outputs[k].get<double>(), 0) : Cell());
    }
    for (const auto& m : metrics) {
      const json* v = r->outputs.is_object() && r->outputs.contains("metrics") && r->outputs["metrics"].contains(m)
                          ? &r->outputs["metrics"][m]
                          : nullptr;
      const bool has = v && v->contains("ar_pct") && (*v)["ar_pct"].is_number();
      row.push_back(has ? Cell((*v)["ar_pct"].get<double>(), 1) : Cell());
    }
    row.push_back(r->id);
    t.rows.push_back(std::move(row));
  }
  t.notes.push_back(
      "AR% = (E_recovered - E_degraded) / |E_teacher - E_degraded| x 100 per metric (empty when the degraded model "
      "was not worse); trainable_params: adapter parameters, or every parameter for llm-qat; train_tokens: tokens "
      "in the training set. Teacher, degraded and recovered values of every cell are in recovery.*.");
  return t;
}

}  // namespace lifeline::sweep
