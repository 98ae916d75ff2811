// Label-weight rows that name many of the classes present among them (soft labels) are
// centred by matrix products instead of row by row: per sub-block of m rows naming P
// classes, with W (m x P) their weights, w the row totals and S' the P classes' shifts less
// the first one's,
//   A' = diag(1/w) W S'           each row's mean shift less the reference (a_i - s_ref)
//   Z  = (X - s_ref) - A'         the rows around their mean shifts, in float64
//   U  = N S' - (W^T diag(1/w) W) S'      the corrections sum_i W_ik (s_k - a_i)
//   T  = W^T Z - U                the class sums sum_i W_ik (x_i - s_k)
// which is what center_label_row computes for each row, in O(m P d) BLAS-like work
// instead of O(m P d) scattered row updates. Engine-internal.
#pragma once

#include <cstdint>
#include <vector>

#include "labelranker/accumulator.hpp"
#include "labelranker/types.hpp"

namespace lrf::kernels {

class DenseLabelRows {
 public:
  // Sub-blocks naming more classes than this take the row-by-row path.
  static constexpr Index kMaxClasses = 512;

  // Sizes the buffers for sub-blocks of at most `rows` rows of d features and C classes.
  void reserve(Index rows, Index d, Index num_classes);

  // Whether rows [first, first + m) of `set` are dense enough in the classes they name
  // (at least a quarter of the m x P entries) for the product path.
  bool dense(const RowSet& set, Index first, Index m);

  // The product path for the rows `dense` accepted: writes each row's centred values,
  // times sqrt(total) * scale, to z (m x d, input precision), and adds the class sums,
  // corrections and counts to the rows slot[k] of the worker's block tables.
  template <class T>
  void centre(const T* x, const RowSet& set, Index first, Index m, Index d, const double* shifts,
              const double* totals, double scale, T* z, const std::int32_t* slot, double* sums,
              double* corrections, double* class_counts);

  // The classes the last sub-block `dense` looked at names.
  const std::vector<Index>& present() const { return present_; }

 private:
  std::vector<std::int32_t> slot_;  // (C) position of each present class, or -1
  std::vector<Index> present_;      // the classes named, in order of appearance
  RowMatrixXd weights_, scaled_, shifts_, means_, centred_, class_sums_;
  RowMatrixXd gram_;
};

}  // namespace lrf::kernels
