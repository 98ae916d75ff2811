// ScatterAccumulator's state as plain arrays: its export, and the validation of a state
// given back (from a file, a pickle or another process) before it is taken over.
#include <algorithm>
#include <string>
#include <utility>

#include "labelranker/accumulator.hpp"
#include "labelranker/errors.hpp"
#include "labelranker/memory.hpp"

namespace lrf {
namespace {

MatrixXd symmetric_from_upper(const MatrixXd& upper, const char* what) {
  return allocating<double>(upper.rows(), upper.cols(), what, [&] {
    MatrixXd full = upper.selfadjointView<Eigen::Upper>();
    return full;
  });
}

}  // namespace

AccumulatorState ScatterAccumulator::export_state() const {
  AccumulatorState s;
  s.n_features = d_;
  s.num_classes = c_;
  s.n_samples = n_samples_;
  s.m2 = symmetric_from_upper(m2_, "a copy of the second moment");
  if (shifts_.rows() == c_) {
    s.sums = copy_of(sums_, "a copy of the class sums");
    s.shifts = copy_of(shifts_, "a copy of the class shifts");
  } else {  // no statistics yet: the tables are all zeros
    allocate_zero(s.sums, c_, d_, "a copy of the class sums");
    allocate_zero(s.shifts, c_, d_, "a copy of the class shifts");
  }
  s.class_counts = copy_of(class_counts_, "a copy of the class counts");
  return s;
}

ScatterAccumulator ScatterAccumulator::from_state(AccumulatorState s) {
  const Index d = s.n_features, c = s.num_classes;
  auto fail = [](const std::string& what) {
    throw InputError("invalid accumulator state: " + what);
  };
  if (d < 1 || c < 2) fail("n_features must be >= 1 and num_classes >= 2");
  // The given arrays are checked against the claimed sizes before anything of those
  // sizes is allocated (a tiny file claiming a huge d must not allocate d x d).
  if (s.class_counts.size() != c) fail("counts must have num_classes entries");
  if (s.shifts.rows() != c || s.shifts.cols() != d)
    fail("shifts must be (num_classes, n_features)");
  if (s.sums.rows() != c || s.sums.cols() != d) fail("sums must be (num_classes, n_features)");
  if (s.m2.rows() != d || s.m2.cols() != d) fail("m2 must be (n_features, n_features)");
  if (s.n_samples < 0) fail("n_rows must be >= 0");
  if (!s.class_counts.allFinite() || (s.class_counts.array() < 0).any())
    fail("counts must be finite and >= 0");
  if (!s.shifts.allFinite() || !s.sums.allFinite() || !s.m2.allFinite())
    fail("arrays must be finite");
  const double asym = (s.m2 - s.m2.transpose()).cwiseAbs().maxCoeff();
  if (asym > 1e-12 * std::max(1.0, s.m2.cwiseAbs().maxCoeff())) fail("m2 must be symmetric");
  if ((s.m2.diagonal().array() < 0).any()) fail("m2 must have a non-negative diagonal");
  ScatterAccumulator acc(Unallocated{}, d, c);
  acc.n_samples_ = s.n_samples;
  acc.class_counts_ = std::move(s.class_counts);
  acc.shifts_ = std::move(s.shifts);
  acc.sums_ = std::move(s.sums);
  acc.m2_ = std::move(s.m2);
  return acc;
}

}  // namespace lrf
