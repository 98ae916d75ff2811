// ScatterAccumulator::add_rows, the O(n d^2) part of an update, in named steps: fix the
// shifts of classes new to the pass, size the workers' buffers, centre each block of rows
// and take its moment (a lane's work), and add the blocks to the pass in block order.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>

#include "kernels.hpp"
#include "label_rows.hpp"
#include "labelranker/accumulator.hpp"
#include "labelranker/blas.hpp"
#include "labelranker/errors.hpp"
#include "labelranker/memory.hpp"
#include "ordered_blocks.hpp"

namespace lrf {
namespace {

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

}  // namespace

// One worker thread's buffers: the centred rows of a block, their moment, and the block's
// per-class sums and counts in tables of the block's classes only (row slot[k] is class
// k's), so that a block's cost does not grow with C.
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

  // The weights of rows [start, start + rows): sample weights, label-weight totals, or
  // nullptr (all ones).
  const double* block_weights(const RowSet& set, Index start, Index rows) {
    if (!set.has_labels()) return set.w == nullptr ? nullptr : set.w + start;
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

  // Centres block b of `in` and takes its moment, in sub-blocks small enough for the
  // centred copy to stay in L2 cache between the two (their products add up in the
  // block's moment). Returns false if it abandoned the block because `stop` was set;
  // `poller` (the calling thread's lane only) is checked between sub-blocks.
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
      if (set.has_labels() && dense.dense(set, start + sub, sub_end - sub)) {
        for (Index k : dense.present()) touch(k);
        dense.centre(in.x, set, start + sub, sub_end - sub, d, in.shifts, wb + sub, scale, zb,
                     slot.data(), sums.data(), corrections.data(), class_counts.data());
        blas::syrk_upper(d, sub_end - sub, zb, d, sub == 0 ? T(0) : T(1), moment<T>().data(), d);
        continue;
      }
      for (Index r = sub; r < sub_end; ++r) {
        const Index i = start + r;
        T* z = zb + (r - sub) * d;
        if (set.has_labels()) {
          add_label_row(in, i, z, wb[r], scale);
          continue;
        }
        const Index k = set.y[i];
        const std::int32_t p = touch(k);
        kernels::center_row(in.row(i), in.shifts + k * d, z, sums.row(p).data(), d,
                            wb == nullptr ? nullptr : wb + r, scale);
        class_counts[p] += wb == nullptr ? 1.0 : wb[r];
      }
      blas::syrk_upper(d, sub_end - sub, zb, d, sub == 0 ? T(0) : T(1), moment<T>().data(), d);
    }
    return true;
  }
};

template <class T>
const double* ScatterAccumulator::assign_shifts(const T* x, const RowSet& set) {
  // Shifts are fixed once per pass, when a class first appears in it: the accumulator's
  // shift, or for a class without one the mean of its first kShiftRows rows in this call;
  // rounded to input precision (so x - s is exact near s).
  Workspace& ws = work_;
  std::vector<Index> fresh;  // classes whose shift is set in this call
  std::vector<Index> taken;  // rows averaged, if fresh
  allocate_vector(taken, c_, "the call's class row counts", Index{-1});
  allocating<std::int64_t>(c_, -1, "the call's class list", [&] { fresh.reserve(c_); });
  Index fresh_open = 0;
  // Row xi is one of class k's; returns true once every class has its shift.
  auto see = [&](Index k, const T* xi) {
    if (!ws.touched[k]) {
      ws.touched[k] = 1;
      ws.classes.push_back(k);  // never reallocates: capacity C since begin_pass
      fresh.push_back(k);
      if (class_counts_[k] > 0) {
        ws.shifts.row(k) = shifts_.row(k);
        return false;
      }
      ws.shifts.row(k).setZero();
      taken[k] = 0;
      ++fresh_open;
    } else if (taken[k] < 0 || taken[k] >= kShiftRows) {
      return fresh_open == 0 && ws.classes.size() == static_cast<std::size_t>(c_);
    }
    ws.shifts.row(k) +=
        Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(xi, d_).template cast<double>();
    if (++taken[k] == kShiftRows) --fresh_open;
    return false;
  };
  bool done = false;
  for (Index i = 0; i < set.n && !done; ++i) {
    const T* xi = x + set.x_row(i) * d_;
    if (!set.has_labels()) {
      done = see(set.y[i], xi);
      continue;
    }
    for (std::int64_t e = set.indptr[i]; e < set.indptr[i + 1] && !done; ++e)
      done = see(set.cols[e], xi);
  }
  for (Index k : fresh) {
    if (taken[k] > 0) ws.shifts.row(k) /= static_cast<double>(taken[k]);
    for (Index j = 0; j < d_; ++j) ws.shifts(k, j) = kernels::round_to<T>(ws.shifts(k, j));
  }
  return ws.shifts.data();
}

template <class T>
void ScatterAccumulator::prepare_lanes(const RowSet& set, Index lanes, Index sub_rows,
                                       bool undoable, bool to_spare) {
  Workspace& ws = work_;
  const Index n = set.n;
  const bool labels = set.has_labels();
  // A block names at most kBlockRows classes, or with label weights its entries' classes.
  Index table_rows = std::min(c_, kBlockRows);
  if (labels) {
    std::int64_t most = 0;
    for (Index start = 0; start < n; start += kBlockRows)
      most = std::max(most, set.indptr[std::min(n, start + kBlockRows)] - set.indptr[start]);
    table_rows = std::max<Index>(1, std::min<Index>(c_, most));
  }
  while (static_cast<Index>(ws.lanes.size()) < lanes) ws.lanes.push_back(std::make_shared<Lane>());
  for (Index l = 0; l < lanes; ++l) {
    Lane& lane = *ws.lanes[l];
    const Index block_rows = std::min(n, sub_rows);
    if (lane.centred<T>().size() < static_cast<std::size_t>(block_rows * d_)) {
      allocating<T>(block_rows, d_, "a worker's centred rows",
                    [&] { lane.centred<T>().resize(static_cast<std::size_t>(block_rows * d_)); });
    }
    if (lane.moment<T>().size() != static_cast<std::size_t>(d_ * d_)) {
      allocating<T>(d_, d_, "a worker's block moment",
                    [&] { lane.moment<T>().resize(static_cast<std::size_t>(d_ * d_)); });
    }
    if (static_cast<Index>(lane.slot.size()) != c_) {
      allocate_vector(lane.slot, c_, "a worker's class slots", std::int32_t{-1});
      lane.classes.clear();
    }
    if (lane.sums.rows() < table_rows) {
      allocate_zero(lane.class_counts, table_rows, 1, "a worker's class counts");
      allocate_zero(lane.sums, table_rows, d_, "a worker's class sums");
      allocating<std::int64_t>(table_rows, -1, "a worker's class list",
                               [&] { lane.classes.reserve(table_rows); });
      if (lane.corrections.rows() > 0) lane.corrections.resize(0, d_);
    }
    if (labels && lane.corrections.rows() < table_rows) {
      allocate_zero(lane.corrections, lane.sums.rows(), d_, "a worker's label-weight corrections");
      allocate_vector(lane.row_weights, kBlockRows, "a worker's row weights", 0.0);
      allocate_vector(lane.row_shift, d_, "a worker's row shift", 0.0);
    }
    if (labels) lane.dense.reserve(sub_rows, d_, c_);
  }
  if (labels && ws.corrections.rows() != c_) {
    allocate_zero(ws.corrections, c_, d_, "the pass's label-weight corrections");
  }
  // An undoable call saves the rows of the classes it names: at most its rows' (entries').
  const Index saved_width = d_ + 1 + (ws.corrections.rows() == c_ ? d_ : 0);
  const Index named = std::min<Index>(c_, labels ? set.indptr[n] : n);
  if (undoable && ws.saved_rows.capacity() < static_cast<std::size_t>(named * saved_width)) {
    allocating<double>(named, saved_width, "the class sums an update may have to restore", [&] {
      ws.saved_rows.reserve(static_cast<std::size_t>(named * saved_width));
      ws.saved_classes.reserve(static_cast<std::size_t>(named));
    });
  }
  if (to_spare && ws.spare.rows() != d_) {
    allocate(ws.spare, d_, d_, "the pass's second moment while an update may be undone");
  }
}

template <class T>
void ScatterAccumulator::reduce_block(Lane& lane, Index b, bool to_spare, bool undoable) {
  Workspace& ws = work_;
  double* dst = to_spare ? ws.spare.data() : ws.moment.data();
  const double* base = b > 0 ? dst : to_spare ? ws.moment.data() : ws.has_moment ? dst : nullptr;
  kernels::fold_upper_scaled(dst, base, lane.moment<T>().data(), d_, lane.weight_exp);
  const bool corrections = ws.corrections.rows() == c_;
  const bool lane_corrections = lane.corrections.rows() > 0;  // zero without label rows
  for (Index p = 0; p < static_cast<Index>(lane.classes.size()); ++p) {
    const Index k = lane.classes[p];
    if (undoable && !ws.saved[k]) {  // keep what this call changes, to undo it
      ws.saved[k] = 1;
      ws.saved_classes.push_back(k);
      ws.saved_rows.insert(ws.saved_rows.end(), ws.sums.row(k).data(), ws.sums.row(k).data() + d_);
      ws.saved_rows.push_back(ws.class_counts[k]);
      if (corrections) {
        const double* u = ws.corrections.row(k).data();
        ws.saved_rows.insert(ws.saved_rows.end(), u, u + d_);
      }
    }
    ws.sums.row(k) += lane.sums.row(p);
    ws.class_counts[k] += lane.class_counts[p];
    lane.sums.row(p).setZero();
    lane.class_counts[p] = 0;
    lane.slot[k] = -1;
    if (lane_corrections) {
      ws.corrections.row(k) += lane.corrections.row(p);
      lane.corrections.row(p).setZero();
    }
  }
  lane.classes.clear();
}

template <class T>
void ScatterAccumulator::add_rows(const T* x, const RowSet& set, const InterruptPoll& poll,
                                  bool undoable) {
  // The rows' statistics go to the workspace and reach the accumulator only when the pass
  // commits, so an invalid row leaves the accumulator as it was.
  Workspace& ws = work_;
  const Index n = set.n;
  const double* shifts = assign_shifts(x, set);

  // Blocks are processed by `lanes` workers (the calling thread is one of them); each
  // block's moment is computed by single-threaded syrks, then added to the call's moment in
  // block order.
  const Index sub_rows = std::max<Index>(64, (Index{1} << 20) / (d_ * Index(sizeof(T))));
  const Index n_blocks = (n + kBlockRows - 1) / kBlockRows;
  const Index lanes = std::max<Index>(1, std::min<Index>(n_threads_, n_blocks));
  // An undoable call builds its moment in `spare` while the pass's moment stays as it was.
  const bool to_spare = undoable && ws.has_moment;
  prepare_lanes<T>(set, lanes, sub_rows, undoable, to_spare);
  if (set.has_labels()) ws.has_labels = true;

  const Rows<T> in{x, d_, set, shifts, sub_rows};
  Poller poller(poll);
  auto process = [&](int l, Index b, const std::atomic<bool>& stop) {
    return ws.lanes[l]->center_block(in, b, l == 0 ? &poller : nullptr, stop);
  };
  auto reduce = [&](int l, Index b) { reduce_block<T>(*ws.lanes[l], b, to_spare, undoable); };
  {
    // One lane: the BLAS may use our threads, unless a pass keeps it serial throughout.
    // Several: each worker runs the BLAS on one thread.
    std::optional<blas::ThreadScope> blas_threads;
    if (lanes > 1) blas_threads.emplace(1);
    else if (!ws.serial_blas) blas_threads.emplace(n_threads_);
    try {
      reduce_blocks_in_order(n_blocks, static_cast<int>(lanes), process, reduce);
    } catch (...) {
      for (Index l = 0; l < lanes; ++l) ws.lanes[l]->clear();
      throw;
    }
  }

  // A non-finite feature (or shift) makes a centred value non-finite and with it the
  // moment's diagonal; so does a square that overflows. O(d) to check per call.
  if (to_spare) ws.moment.swap(ws.spare);
  ws.clear_saved();
  ws.has_moment = true;
  ws.n_samples += n;
  if (!ws.moment.diagonal().allFinite()) throw_non_finite(x, set);
}

template <class T>
void ScatterAccumulator::throw_non_finite(const T* x, const RowSet& set) const {
  for (Index i = 0; i < set.n; ++i) {
    const std::int64_t row = set.x_row(i);
    for (Index j = 0; j < d_; ++j) {
      if (!std::isfinite(x[row * d_ + j])) {
        std::ostringstream msg;
        msg << "X contains NaN or infinity (X[" << row << ", " << j << "] = " << x[row * d_ + j]
            << "); remove or impute non-finite features before ranking";
        throw InputError(msg.str());
      }
    }
  }
  const bool weighted = set.w != nullptr || set.has_labels();
  throw InputError(std::string("X has values whose ") + (weighted ? "weighted " : "") +
                   "squares overflow " +
                   (std::is_same_v<T, float> ? "float32; pass float64 features" : "float64") +
                   " (rescale the features)");
}

template void ScatterAccumulator::add_rows(const float*, const RowSet&, const InterruptPoll&, bool);
template void ScatterAccumulator::add_rows(const double*, const RowSet&, const InterruptPoll&,
                                           bool);

}  // namespace lrf
