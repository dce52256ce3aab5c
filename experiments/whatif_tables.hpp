// The what-if analysis of one point as report tables (summary, elasticities,
// operators by share), for `lifeline whatif` and its HTML page.
#pragma once

#include <cstddef>
#include <vector>

#include "reports/table.hpp"
#include "roofline/whatif/whatif.hpp"

namespace lifeline::whatif {

std::vector<reports::Table> AnalysisTables(const PointAnalysis& a, const Setting& s, size_t top_ops);

}  // namespace lifeline::whatif
