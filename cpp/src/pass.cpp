// ScatterAccumulator's passes: opening, committing and dropping them, undoing one call
// inside a pass, and update(), which runs every call inside a pass (its own if none is
// open) so that a failed call leaves no trace. The rows themselves are added by add_rows
// (accumulate.cpp).
#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>

#include "labelranker/accumulator.hpp"
#include "labelranker/blas.hpp"
#include "labelranker/errors.hpp"
#include "labelranker/memory.hpp"

namespace lrf {

void ScatterAccumulator::begin_pass() {
  if (work_.open) throw InputError("a pass is already open on this accumulator");
  Workspace& ws = work_;
  if (ws.class_counts.size() != c_) {
    allocate_zero(ws.class_counts, c_, 1, "the pass's class counts");
    allocate(ws.shifts, c_, d_, "the pass's class shifts");
    allocate_zero(ws.sums, c_, d_, "the pass's class sums");
    allocate_vector(ws.touched, c_, "the pass's class flags", char{0});
    allocate_vector(ws.saved, c_, "the pass's class flags", char{0});
    allocating<std::int64_t>(c_, -1, "the pass's class list", [&] { ws.classes.reserve(c_); });
  }
  if (ws.moment.rows() != d_) allocate(ws.moment, d_, d_, "the pass's second moment");
  ws.classes.clear();
  ws.n_samples = 0;
  ws.has_moment = false;
  ws.saw_double = false;
  // Our workers run the BLAS single-threaded; holding that setting for the whole pass
  // spares OpenBLAS a resize of its pool (and its idle threads' spinning) per call.
  ws.serial_blas = std::make_unique<blas::ThreadScope>(1);
  ws.open = true;
}

void ScatterAccumulator::Workspace::clear_saved() {
  for (Index k : saved_classes) saved[static_cast<std::size_t>(k)] = 0;
  saved_classes.clear();
  saved_rows.clear();
}

void ScatterAccumulator::Workspace::release() {
  moment = MatrixXd();
  spare = MatrixXd();
  shifts = RowMatrixXd();
  sums = RowMatrixXd();
  shifts_f.resize(0, 0);
  class_counts = VectorXd();
  std::vector<char>().swap(touched);
  std::vector<char>().swap(saved);
  std::vector<Index>().swap(classes);
  std::vector<Index>().swap(saved_classes);
  std::vector<double>().swap(saved_rows);
  lanes.clear();
}

void ScatterAccumulator::release_buffers() {
  if (work_.open) throw InputError("cannot release buffers while a pass is open");
  work_.release();
}

void ScatterAccumulator::abort_pass() {
  Workspace& ws = work_;
  for (Index k : ws.classes) {
    ws.sums.row(k).setZero();
    ws.class_counts[k] = 0;
    ws.touched[k] = 0;
  }
  ws.classes.clear();
  ws.clear_saved();
  ws.serial_blas.reset();
  work_.open = false;
}

void ScatterAccumulator::commit_pass() {
  if (!work_.open) throw InputError("no pass is open on this accumulator");
  Workspace& ws = work_;
  try {
    VectorXd counts;
    allocate_zero(counts, c_, 1, "the pass's class counts");
    for (Index k : ws.classes) counts[k] = ws.class_counts[k];
    if (ws.has_moment) absorb(ws.classes, counts, ws.shifts, ws.sums, ws.moment, ws.n_samples);
  } catch (...) {
    abort_pass();  // a refused pass is dropped whole: the accumulator stays as it was
    throw;
  }
  abort_pass();  // clears the workspace
}

void ScatterAccumulator::undo_call(std::size_t classes_before, bool saw_double_before) {
  Workspace& ws = work_;
  const double* saved = ws.saved_rows.data();
  for (Index k : ws.saved_classes) {
    ws.sums.row(k) = Eigen::Map<const RowVectorXd>(saved, d_);
    ws.class_counts[k] = saved[d_];
    saved += d_ + 1;
  }
  ws.clear_saved();
  for (std::size_t i = classes_before; i < ws.classes.size(); ++i) {
    const Index k = ws.classes[i];  // first seen in the undone call: empty before it
    ws.sums.row(k).setZero();
    ws.class_counts[k] = 0;
    ws.touched[k] = 0;
  }
  ws.classes.resize(classes_before);
  ws.saw_double = saw_double_before;
}

void ScatterAccumulator::update(const float* x, Index n, const std::int64_t* y, const double* w,
                                const InterruptPoll& poll) {
  update_impl(x, n, y, w, poll);
}

void ScatterAccumulator::update(const double* x, Index n, const std::int64_t* y, const double* w,
                                const InterruptPoll& poll) {
  update_impl(x, n, y, w, poll);
}

template <class T>
void ScatterAccumulator::update_impl(const T* x, Index n, const std::int64_t* y, const double* w,
                                     const InterruptPoll& poll) {
  if (n < 0) throw InputError("negative number of rows");
  if (n == 0) return;
  const bool own_pass = !work_.open;
  if (own_pass) {
    validate_rows(n, y, w);  // before the pass opens: nothing to undo
    begin_pass();
  }
  const std::size_t classes_before = work_.classes.size();
  const bool saw_double_before = work_.saw_double;
  // Inside a caller's pass an interrupt undoes this call only, which costs a saved copy of
  // what it changes; in a pass of its own, dropping the pass is the undo.
  const bool undoable = !own_pass && static_cast<bool>(poll);
  try {
    if (!own_pass) validate_rows(n, y, w);
    if constexpr (std::is_same_v<T, float>) {
      if (work_.saw_double) {
        throw InputError(
            "X is float32 but an earlier chunk of this pass was float64; pass "
            "the remaining chunks as float64");
      }
    } else {
      work_.saw_double = true;
    }
    add_rows(x, n, y, w, poll, undoable);
  } catch (const Interrupted&) {
    if (undoable) undo_call(classes_before, saw_double_before);
    else abort_pass();
    throw;
  } catch (...) {
    abort_pass();  // an error anywhere in a pass drops the whole pass
    throw;
  }
  if (own_pass) commit_pass();
}

void ScatterAccumulator::validate_rows(Index n, const std::int64_t* y, const double* w) const {
  for (Index i = 0; i < n; ++i) {
    if (y[i] < 0 || y[i] >= c_) {
      std::ostringstream msg;
      msg << "y[" << i << "] = " << y[i] << " is not a class index in [0, " << c_ << ")";
      throw InputError(msg.str());
    }
  }
  if (w != nullptr) {
    for (Index i = 0; i < n; ++i) {
      if (!std::isfinite(w[i]) || w[i] < 0) {
        std::ostringstream msg;
        msg << "sample_weight[" << i << "] = " << w[i] << "; weights must be finite and >= 0";
        throw InputError(msg.str());
      }
    }
  }
}

}  // namespace lrf
