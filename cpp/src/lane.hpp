// One worker thread's buffers for the update path (a lane), the rows of a call as a lane
// reads them, and the interrupt poll of the calling thread. Engine-internal (accumulate.cpp,
// class_blocks.cpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels.hpp"
#include "label_rows.hpp"
#include "labelranker/accumulator.hpp"
#include "labelranker/blas.hpp"
#include "labelranker/errors.hpp"

namespace lrf {
namespace detail {

// Calls the interrupt poll on the calling thread at most once per kPollInterval.
class Poller {
 public:
  explicit Poller(const InterruptPoll& poll) : poll_(poll), next_(Clock::now() + kInterval) {}
  void check() {
    if (!poll_) return;
    const auto now = Clock::now();
    if (now < next_) return;
    next_ = now + kInterval;
    if (poll_()) throw Interrupted();
  }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kInterval = ScatterAccumulator::kPollInterval;
  const InterruptPoll& poll_;
  Clock::time_point next_;
};

// The rows of one update() call, as a lane reads them.
template <class T>
struct Rows {
  const T* x;  // (x_rows x d) row-major
  Index d;
  const RowSet& set;
  const double* shifts;  // (C x d) the pass's shifts (values at input precision)
  Index sub_rows;        // rows centred and multiplied at a time
  const T* row(Index i) const { return x + set.x_row(i) * d; }
};

}  // namespace detail

using detail::Poller;
using detail::Rows;

// One worker thread's buffers: the centred rows of a block, their moment, and for label
// weights the block's per-class sums and counts in tables of the block's classes only (row
// slot[k] is class k's), so that a block's cost does not grow with C.
struct ScatterAccumulator::Lane {
  std::vector<float> centred_f, moment_f;   // float32 input: centred block and its moment
  std::vector<double> centred_d, moment_d;  // float64 input
  RowMatrixXd sums;                         // (rows x d) the block's shifted class sums
  RowMatrixXd corrections;                  // (rows x d) label-weight rows' U_k, if any
  VectorXd class_counts;                    // (rows)
  std::vector<std::int32_t> slot;           // (C) row of class k in the tables, or -1
  std::vector<Index> classes;               // the block's classes, by row of the tables
  std::vector<double> row_weights;          // (kBlockRows) label-weight rows' totals
  std::vector<double> row_shift;            // (d) a label-weight row's mean shift
  kernels::DenseLabelRows dense;            // soft-label sub-blocks' product path
  int weight_exp = 0;                       // the block's rows are scaled by 2^-weight_exp
  // Single-label rows by class (class_blocks.cpp): the running sum of the class being
  // centred, and the sums and counts of the block's classes that reach into other blocks
  // (at most its first and its last), which reduce_block adds to the pass in block order.
  std::vector<double> class_sum;   // (d)
  std::vector<double> carry_sums;  // (2 x d)
  double carry_counts[2] = {0.0, 0.0};
  Index carry_classes[2] = {-1, -1};  // the call's class indices (ClassRows::classes)
  int carries = 0;
  bool overflow = false;  // a class sum of the call is not finite

  template <class T>
  std::vector<T>& centred() {
    if constexpr (std::is_same_v<T, float>) return centred_f;
    else return centred_d;
  }
  template <class T>
  std::vector<T>& moment() {
    if constexpr (std::is_same_v<T, float>) return moment_f;
    else return moment_d;
  }
  void clear() {  // after a failure: no partial block left behind
    carries = 0;
    for (Index p = 0; p < static_cast<Index>(classes.size()); ++p) {
      sums.row(p).setZero();
      if (corrections.rows() > 0) corrections.row(p).setZero();
      class_counts[p] = 0;
      slot[classes[p]] = -1;
    }
    classes.clear();
  }
  // Class k's row of the block tables (a zero row when k is new to the block).
  std::int32_t touch(Index k) {
    if (slot[k] < 0) {
      slot[k] = static_cast<std::int32_t>(classes.size());
      classes.push_back(k);
    }
    return slot[k];
  }

  // The label-weight totals of rows [start, start + rows).
  const double* block_weights(const RowSet& set, Index start, Index rows) {
    for (Index r = 0; r < rows; ++r) {
      double total = 0.0;
      for (std::int64_t e = set.indptr[start + r]; e < set.indptr[start + r + 1]; ++e)
        total += set.vals[e];
      row_weights[r] = total;
    }
    return row_weights.data();
  }

  // Row i with label weights: one class is a weighted single-label row (the same
  // arithmetic); several go through center_label_row; none, or no weight, add nothing.
  template <class T>
  void add_label_row(const Rows<T>& in, Index i, T* z, double total, double scale) {
    const RowSet& set = in.set;
    const std::int64_t first = set.indptr[i];
    const Index L = set.indptr[i + 1] - first;
    for (Index e = 0; e < L; ++e) class_counts[touch(set.cols[first + e])] += set.vals[first + e];
    const Index d = in.d;
    if (L == 1) {
      const Index k = set.cols[first];
      kernels::center_row(in.row(i), in.shifts + k * d, z, sums.row(slot[k]).data(), d,
                          set.vals + first, scale);
    } else if (L == 0 || !(total > 0.0)) {
      std::fill(z, z + d, T(0));
    } else {
      kernels::center_label_row(in.row(i), in.shifts, set.cols + first, set.vals + first, L, total,
                                scale, z, slot.data(), sums.data(), corrections.data(),
                                row_shift.data(), d);
    }
  }

  // Centres block b of `in` (rows with label weights) and takes its moment, in sub-blocks
  // small enough for the centred copy to stay in L2 cache between the two (their products
  // add up in the block's moment). Returns false if it abandoned the block because `stop`
  // was set; `poller` (the calling thread's lane only) is checked between sub-blocks.
  template <class T>
  bool center_block(const Rows<T>& in, Index b, Poller* poller, const std::atomic<bool>& stop) {
    const RowSet& set = in.set;
    const Index d = in.d;
    const Index start = b * kBlockRows;
    const Index rows = std::min(kBlockRows, set.n - start);
    T* zb = centred<T>().data();
    const double* wb = block_weights(set, start, rows);
    weight_exp = kernels::block_weight_exponent(wb, rows);
    const double scale = std::ldexp(1.0, -weight_exp);
    for (Index sub = 0; sub < rows; sub += in.sub_rows) {
      if (poller != nullptr) poller->check();
      if (stop.load(std::memory_order_relaxed)) return false;
      const Index sub_end = std::min(rows, sub + in.sub_rows);
      if (dense.dense(set, start + sub, sub_end - sub)) {
        for (Index k : dense.present()) touch(k);
        dense.centre(in.x, set, start + sub, sub_end - sub, d, in.shifts, wb + sub, scale, zb,
                     slot.data(), sums.data(), corrections.data(), class_counts.data());
        blas::syrk_upper(d, sub_end - sub, zb, d, sub == 0 ? T(0) : T(1), moment<T>().data(), d);
        continue;
      }
      for (Index r = sub; r < sub_end; ++r)
        add_label_row(in, start + r, zb + (r - sub) * d, wb[r], scale);
      blas::syrk_upper(d, sub_end - sub, zb, d, sub == 0 ? T(0) : T(1), moment<T>().data(), d);
    }
    return true;
  }
};

}  // namespace lrf
