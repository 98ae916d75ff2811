// ScatterAccumulator::add_rows, the O(n d^2) part of an update, in named steps: size the
// workers' buffers, fix the shifts of classes new to the pass (and for single-label rows
// take the class sums, class_blocks.cpp), centre each block of rows and take its moment (a
// lane's work), and add the blocks to the pass in block order.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels.hpp"
#include "label_rows.hpp"
#include "labelranker/accumulator.hpp"
#include "labelranker/blas.hpp"
#include "labelranker/errors.hpp"
#include "labelranker/memory.hpp"
#include "lane.hpp"
#include "ordered_blocks.hpp"

namespace lrf {

template <class T>
const double* ScatterAccumulator::assign_shifts(const T* x, const RowSet& set) {
  // Shifts are fixed once per pass, when a class first appears in it: the accumulator's
  // shift, or for a class without one the mean of its first kShiftRows rows in this call;
  // rounded to input precision (so x - s is exact near s). Label-weight rows only
  // (prepare_class_blocks does the same for single-label rows).
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
      ws.sums.row(k).setZero();  // meaningful from now on
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
  // Label weights: a block's tables name at most its entries' classes.
  Index table_rows = 0;
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
    lane.overflow = false;
    if (!labels) {
      if (lane.class_sum.size() != static_cast<std::size_t>(d_)) {
        allocate_vector(lane.class_sum, d_, "a worker's class sum", 0.0);
        allocate_vector(lane.carry_sums, 2 * d_, "a worker's class sums", 0.0);
      }
      continue;
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
    if (lane.corrections.rows() < table_rows) {
      allocate_zero(lane.corrections, lane.sums.rows(), d_, "a worker's label-weight corrections");
      allocate_vector(lane.row_weights, kBlockRows, "a worker's row weights", 0.0);
      allocate_vector(lane.row_shift, d_, "a worker's row shift", 0.0);
    }
    lane.dense.reserve(sub_rows, d_, c_);
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
  const bool lane_corrections = lane.corrections.rows() > 0;             // zero without label rows
  for (Index p = 0; p < static_cast<Index>(lane.classes.size()); ++p) {  // label weights
    const Index k = lane.classes[p];
    if (undoable) ws.save_class(k, d_);  // keep what this call changes, to undo it
    ws.sums.row(k) += lane.sums.row(p);  // checked when the pass commits
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
  const ScatterAccumulator::ClassRows& by = ws.by_class;
  for (int c = 0; c < lane.carries; ++c) {  // single-label classes spanning several blocks
    const Index j = lane.carry_classes[c];
    const Index k = by.classes[j];
    const Eigen::Map<const RowVectorXd> part(lane.carry_sums.data() + c * d_, d_);
    // A class new to the pass starts from its first block's part.
    if (by.fresh[j] != 0 && by.start[j] >= b * kBlockRows) ws.sums.row(k) = part;
    else ws.sums.row(k) += part;
    ws.class_counts[k] += lane.carry_counts[c];
    lane.overflow =
        lane.overflow || !std::isfinite(ws.class_counts[k]) || !ws.sums.row(k).allFinite();
  }
  lane.carries = 0;
}

namespace {
constexpr std::size_t kKeptGroupedRows = std::size_t{1} << 20;
}  // namespace

template <class T>
void ScatterAccumulator::add_rows(const T* x, const RowSet& set, const InterruptPoll& poll,
                                  bool undoable) {
  // The rows' statistics go to the workspace and reach the accumulator only when the pass
  // commits, so an invalid row leaves the accumulator as it was.
  Workspace& ws = work_;
  const Index n = set.n;
  if (set.has_labels()) {
    // Label weights with one class on every row (one-hot, or one weighted class) are
    // weighted single-label rows: they take that path, and give its statistics bit for bit.
    bool single = true;
    for (Index i = 0; i <= n && single; ++i) single = set.indptr[i] == i;
    if (single)
      return add_rows(x, RowSet{n, set.x_rows, set.index, set.cols, set.vals}, poll, undoable);
  }

  // Blocks are processed by `lanes` workers (the calling thread is one of them); each
  // block's moment is computed by single-threaded syrks, then added to the call's moment in
  // block order.
  const Index sub_rows = std::max<Index>(64, (Index{1} << 20) / (d_ * Index(sizeof(T))));
  const Index n_blocks = (n + kBlockRows - 1) / kBlockRows;
  const Index lanes = std::max<Index>(1, std::min<Index>(n_threads_, n_blocks));
  // An undoable call builds its moment in `spare` while the pass's moment stays as it was.
  const bool to_spare = undoable && ws.has_moment;
  prepare_lanes<T>(set, lanes, sub_rows, undoable, to_spare);
  Poller poller(poll);
  const bool labels = set.has_labels();
  if (labels) ws.has_labels = true;
  // Label-weight rows go in row order; single-label rows class by class (class_blocks.cpp).
  if (labels) assign_shifts(x, set);
  else prepare_class_blocks(x, set, undoable);
  const Rows<T> in{x, d_, set, ws.shifts.data(), sub_rows};
  auto process = [&](int l, Index b, const std::atomic<bool>& stop) {
    Poller* lane_poller = l == 0 ? &poller : nullptr;
    if (labels) return ws.lanes[l]->center_block(in, b, lane_poller, stop);
    return center_class_block(*ws.lanes[l], in, b, lane_poller, stop);
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
  // moment's diagonal; so does a square that overflows. O(d) to check per call. Class
  // sums formed class by class were checked as they were written.
  if (to_spare) ws.moment.swap(ws.spare);
  ws.clear_saved();
  ws.has_moment = true;
  ws.n_samples += n;
  // The grouped rows of a large call are not kept (a stream's chunks are far smaller).
  if (ws.by_class.rows.capacity() > kKeptGroupedRows) std::vector<Index>().swap(ws.by_class.rows);
  if (!ws.moment.diagonal().allFinite()) throw_non_finite(x, set);
  bool overflow = false;
  for (Index l = 0; l < lanes; ++l)
    overflow = std::exchange(ws.lanes[l]->overflow, false) || overflow;
  if (overflow) throw_overflow();
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
