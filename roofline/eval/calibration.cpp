#include "roofline/eval/calibration.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "roofline/common/error.hpp"

namespace lifeline {

std::string DeviceParamKey(DeviceParam p) {
  switch (p) {
    case DeviceParam::kMemoryEfficiency: return "efficiency.memory";
    case DeviceParam::kComputeEfficiency: return "efficiency.compute";
    case DeviceParam::kAttentionComputeEfficiency: return "efficiency.attention_compute";
    case DeviceParam::kMoeExpertComputeInt2Efficiency: return "efficiency.moe_expert_compute_int2";
    case DeviceParam::kMoeExpertComputeInt3Efficiency: return "efficiency.moe_expert_compute_int3";
    case DeviceParam::kMoeExpertComputeInt4Efficiency: return "efficiency.moe_expert_compute_int4";
    case DeviceParam::kMoeExpertComputeInt8Efficiency: return "efficiency.moe_expert_compute_int8";
    case DeviceParam::kDispatchOverhead: return "overhead.dispatch_s";
    case DeviceParam::kHeadDispatchOverhead: return "overhead.head_dispatch_s";
  }
  return "?";
}

DeviceParam ParseDeviceParam(const std::string& key) {
  for (auto p : {DeviceParam::kMemoryEfficiency, DeviceParam::kComputeEfficiency,
                 DeviceParam::kAttentionComputeEfficiency, DeviceParam::kMoeExpertComputeInt2Efficiency,
                 DeviceParam::kMoeExpertComputeInt3Efficiency, DeviceParam::kMoeExpertComputeInt4Efficiency,
                 DeviceParam::kMoeExpertComputeInt8Efficiency,
                 DeviceParam::kDispatchOverhead, DeviceParam::kHeadDispatchOverhead}) {
    if (DeviceParamKey(p) == key) return p;
  }
  throw MakeConfigError("--fit", key, "not a fittable device parameter",
                        "efficiency.memory, efficiency.compute, efficiency.attention_compute, "
                        "efficiency.moe_expert_compute_int{2,3,4,8}, overhead.dispatch_s or overhead.head_dispatch_s",
                        "");
}

double& DeviceParamRef(DeviceSpec& d, DeviceParam p) {
  switch (p) {
    case DeviceParam::kMemoryEfficiency: return d.memory_efficiency;
    case DeviceParam::kComputeEfficiency: return d.compute_efficiency;
    case DeviceParam::kAttentionComputeEfficiency: return d.attention_compute_efficiency;
    case DeviceParam::kMoeExpertComputeInt2Efficiency: return d.moe_expert_compute_int2_efficiency;
    case DeviceParam::kMoeExpertComputeInt3Efficiency: return d.moe_expert_compute_int3_efficiency;
    case DeviceParam::kMoeExpertComputeInt4Efficiency: return d.moe_expert_compute_int4_efficiency;
    case DeviceParam::kMoeExpertComputeInt8Efficiency: return d.moe_expert_compute_int8_efficiency;
    case DeviceParam::kDispatchOverhead: return d.dispatch_overhead_s;
    case DeviceParam::kHeadDispatchOverhead: return d.head_dispatch_overhead_s;
  }
  throw InternalError("bad DeviceParam");
}

namespace {

bool IsEfficiency(DeviceParam p) {
  return p != DeviceParam::kDispatchOverhead && p != DeviceParam::kHeadDispatchOverhead;
}

// Smooth unconstrained parametrisation: efficiencies = logistic(x) in (0, 1);
// overheads = 1e-6 s * x^2 >= 0 (reaches zero smoothly).
constexpr double kOverheadScale = 1e-6;
double ToValue(DeviceParam p, double x) {
  return IsEfficiency(p) ? 1.0 / (1.0 + std::exp(-x)) : kOverheadScale * x * x;
}
double FromValue(DeviceParam p, double v) {
  if (IsEfficiency(p)) {
    v = std::clamp(v, 1e-6, 1.0 - 1e-6);
    return std::log(v / (1.0 - v));
  }
  return std::sqrt(std::max(v, 0.0) / kOverheadScale);
}

DeviceSpec Apply(const DeviceSpec& base, const std::vector<DeviceParam>& params, const Eigen::VectorXd& x) {
  DeviceSpec d = base;
  for (size_t i = 0; i < params.size(); ++i) {
    DeviceParamRef(d, params[i]) = ToValue(params[i], x[static_cast<Eigen::Index>(i)]);
  }
  return d;
}

}  // namespace

CalibrationResult CalibrateDevice(const DeviceSpec& initial, const std::vector<DeviceParam>& params,
                                  const std::function<std::vector<double>(const DeviceSpec&)>& predict,
                                  const std::vector<double>& targets, int max_iterations) {
  const auto n = static_cast<Eigen::Index>(params.size());
  const auto m = static_cast<Eigen::Index>(targets.size());
  if (m < n) {
    throw MakeConfigError("calibration", "observations",
                          std::to_string(m) + " observations for " + std::to_string(n) + " parameters",
                          "at least as many observations as fitted parameters", "fit fewer parameters");
  }
  Eigen::VectorXd x0(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    DeviceSpec copy = initial;
    const DeviceParam p = params[static_cast<size_t>(i)];
    double v = DeviceParamRef(copy, p);
    if (!IsEfficiency(p) && !(v > 0)) v = 1e-7;  // start overheads off zero
    x0[i] = FromValue(p, v);
  }
  auto residual = [&](const Eigen::VectorXd& p) {
    const std::vector<double> y = predict(Apply(initial, params, p));
    Eigen::VectorXd r(m);
    for (Eigen::Index i = 0; i < m; ++i) r[i] = y[static_cast<size_t>(i)] - targets[static_cast<size_t>(i)];
    return r;
  };
  // Levenberg-Marquardt from one start; returns the final point and cost.
  auto solve = [&](Eigen::VectorXd x, int* iterations, bool* converged) {
    Eigen::VectorXd r = residual(x);
    double cost = r.squaredNorm();
    double lambda = 1e-3;
    *converged = false;
    for (int it = 0; it < max_iterations; ++it) {
      *iterations = it + 1;
      Eigen::MatrixXd J(m, n);
      for (Eigen::Index j = 0; j < n; ++j) {
        Eigen::VectorXd xp = x;
        const double h = 1e-6;
        xp[j] += h;
        J.col(j) = (residual(xp) - r) / h;
      }
      const Eigen::MatrixXd A = J.transpose() * J;
      const Eigen::VectorXd g = J.transpose() * r;
      bool improved = false;
      for (int tries = 0; tries < 20 && !improved; ++tries) {
        Eigen::MatrixXd Ad = A;
        Ad.diagonal() += lambda * (A.diagonal().array() + 1e-12).matrix();
        const Eigen::VectorXd xn = x + Ad.ldlt().solve(-g);
        const Eigen::VectorXd rn = residual(xn);
        const double cn = rn.squaredNorm();
        if (std::isfinite(cn) && cn < cost) {
          const double rel = (cost - cn) / std::max(cost, 1e-300);
          x = xn;
          r = rn;
          cost = cn;
          lambda = std::max(lambda / 3, 1e-12);
          improved = true;
          if (rel < 1e-12) *converged = true;
        } else {
          lambda *= 4;
        }
      }
      if (!improved || *converged) {
        *converged = true;
        break;
      }
    }
    return std::make_pair(x, cost);
  };
  // Multi-start: the given values, then each parameter moved down or up
  // (all 2^n combinations), keeping the lowest cost. The roofline's max()
  // makes the cost surface non-convex, so one start can stall.
  CalibrationResult res;
  Eigen::VectorXd x = x0;
  double best = std::numeric_limits<double>::infinity();
  const int combos = 1 << std::min<Eigen::Index>(n, 8);
  for (int c = -1; c < combos; ++c) {
    Eigen::VectorXd start = x0;
    if (c >= 0) {
      for (Eigen::Index j = 0; j < n && j < 8; ++j) {
        const bool up = ((c >> j) & 1) != 0;
        if (IsEfficiency(params[static_cast<size_t>(j)])) start[j] += up ? 1.5 : -1.5;
        else start[j] *= up ? 2.0 : 0.5;
      }
    }
    int iters = 0;
    bool conv = false;
    auto [xs, cost] = solve(start, &iters, &conv);
    res.iterations += iters;
    if (cost < best) {
      best = cost;
      x = xs;
      res.converged = conv;
    }
  }
  res.device = Apply(initial, params, x);
  res.predicted = predict(res.device);
  res.residuals.resize(targets.size());
  double ss = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    res.residuals[i] = res.predicted[i] - targets[i];
    ss += res.residuals[i] * res.residuals[i];
    res.max_abs = std::max(res.max_abs, std::fabs(res.residuals[i]));
  }
  res.rms = std::sqrt(ss / static_cast<double>(targets.size()));
  return res;
}

}  // namespace lifeline
