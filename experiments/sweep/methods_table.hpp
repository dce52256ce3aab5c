#pragma once
// The recovery methods x degradations table of a report (Recover-LoRA's
// Table 2 and Figure 2 in one): one row per recovery cell, ordered by
// degradation and method, with AR% for every metric and task the cells
// evaluated, the trainable parameter count and the training-set size.

#include <optional>
#include <vector>

#include "experiments/sweep/store.hpp"
#include "reports/table.hpp"

namespace lifeline::sweep {

// A short text for a cell's degradation from the recipe it ran with, e.g.
// "quant int2 g32 asym" or "noise rel_l2 0.3" ("+" between kinds).
std::string DegradationLabel(const nlohmann::json& recipe);

// The table, or nothing when the cells ran fewer than two methods and fewer
// than two degradations (the recovery table says all there is then).
std::optional<reports::Table> MethodsTable(const std::vector<const CellRow*>& recovery);

}  // namespace lifeline::sweep
