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
  if (ws.class_counts.size() != c_ || ws.sums.rows() != c_) {  // (adopt_pass took them)
    allocate_zero(ws.class_counts, c_, 1, "the pass's class counts");
    allocate(ws.shifts, c_, d_, "the pass's class shifts");
    allocate(ws.sums, c_, d_, "the pass's class sums");  // rows set when a class is seen
    allocate_vector(ws.touched, c_, "the pass's class flags", char{0});
    allocate_vector(ws.saved, c_, "the pass's class flags", char{0});
    allocating<std::int64_t>(c_, -1, "the pass's class list", [&] { ws.classes.reserve(c_); });
  }
  if (ws.moment.rows() != d_) allocate(ws.moment, d_, d_, "the pass's second moment");
  ws.classes.clear();
  ws.n_samples = 0;
  ws.has_moment = false;
  ws.saw_double = false;
  ws.has_labels = false;
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
  corrections = RowMatrixXd();
  class_counts = VectorXd();
  std::vector<char>().swap(touched);
  std::vector<char>().swap(saved);
  std::vector<Index>().swap(classes);
  std::vector<Index>().swap(saved_classes);
  std::vector<double>().swap(saved_rows);
  lanes.clear();
  by_class = ClassRows();
}

void ScatterAccumulator::release_buffers() {
  if (work_.open) throw InputError("cannot release buffers while a pass is open");
  work_.release();
}

void ScatterAccumulator::abort_pass() {
  Workspace& ws = work_;
  const bool corrections = ws.corrections.rows() == c_;
  for (Index k : ws.classes) {
    if (corrections) ws.corrections.row(k).setZero();
    ws.class_counts[k] = 0;
    ws.touched[k] = 0;
  }
  ws.classes.clear();
  ws.has_labels = false;
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
    if (ws.has_labels) add_label_correction();
    if (ws.has_moment && shifts_.rows() != c_ && n_samples_ == 0) {
      adopt_pass(ws.moment);
    } else if (ws.has_moment) {
      absorb(ws.classes, counts, ws.shifts, ws.sums, ws.moment, ws.n_samples);
    }
  } catch (...) {
    abort_pass();  // a refused pass is dropped whole: the accumulator stays as it was
    throw;
  }
  abort_pass();  // clears the workspace
}

void ScatterAccumulator::add_label_correction() {
  // sum_k (s_k - s_ref) U_k^T, which is sum_i sum_k W_ik (s_k - a_i)(s_k - a_i)^T (the
  // pairs' spread around each row's mean shift) because sum_k W_ik (s_k - a_i) = 0; the
  // reference s_ref (a shift of the pass) keeps the products free of a large offset.
  Workspace& ws = work_;
  const Index L = static_cast<Index>(ws.classes.size());
  if (L == 0) return;
  RowMatrixXd rel, corr;
  allocate(rel, L, d_, "the label-weight correction's shifts");
  allocate(corr, L, d_, "the label-weight correction's sums");
  const RowVectorXd ref = ws.shifts.row(ws.classes[0]);
  for (Index j = 0; j < L; ++j) {
    rel.row(j) = ws.shifts.row(ws.classes[j]) - ref;
    corr.row(j) = ws.corrections.row(ws.classes[j]);
  }
  MatrixXd product;
  allocate(product, d_, d_, "the label-weight correction");
  product.noalias() = rel.transpose() * corr;
  for (Index j = 0; j < d_; ++j)
    for (Index i = 0; i <= j; ++i) ws.moment(i, j) += 0.5 * (product(i, j) + product(j, i));
}

void ScatterAccumulator::undo_call(std::size_t classes_before, bool saw_double_before) {
  Workspace& ws = work_;
  const bool corrections = ws.corrections.rows() == c_;  // the layout reduce_block saved
  const double* saved = ws.saved_rows.data();
  for (Index k : ws.saved_classes) {
    ws.sums.row(k) = Eigen::Map<const RowVectorXd>(saved, d_);
    ws.class_counts[k] = saved[d_];
    saved += d_ + 1;
    if (corrections) {
      ws.corrections.row(k) = Eigen::Map<const RowVectorXd>(saved, d_);
      saved += d_;
    }
  }
  ws.clear_saved();
  for (std::size_t i = classes_before; i < ws.classes.size(); ++i) {
    const Index k = ws.classes[i];  // first seen in the undone call: empty before it
    if (corrections) ws.corrections.row(k).setZero();
    ws.class_counts[k] = 0;
    ws.touched[k] = 0;
  }
  ws.classes.resize(classes_before);
  ws.saw_double = saw_double_before;
}

void ScatterAccumulator::update(const float* x, Index n, const std::int64_t* y, const double* w,
                                const InterruptPoll& poll) {
  update_impl(x, RowSet{n, n, nullptr, y, w}, poll);
}

void ScatterAccumulator::update(const double* x, Index n, const std::int64_t* y, const double* w,
                                const InterruptPoll& poll) {
  update_impl(x, RowSet{n, n, nullptr, y, w}, poll);
}

void ScatterAccumulator::update(const float* x, const RowSet& rows, const InterruptPoll& poll) {
  update_impl(x, rows, poll);
}

void ScatterAccumulator::update(const double* x, const RowSet& rows, const InterruptPoll& poll) {
  update_impl(x, rows, poll);
}

template <class T>
void ScatterAccumulator::update_impl(const T* x, const RowSet& rows, const InterruptPoll& poll) {
  if (rows.n < 0) throw InputError("negative number of rows");
  if (rows.n == 0) return;
  const bool own_pass = !work_.open;
  if (own_pass) {
    validate_rows(rows);  // before the pass opens: nothing to undo
    begin_pass();
  }
  const std::size_t classes_before = work_.classes.size();
  const bool saw_double_before = work_.saw_double;
  // Inside a caller's pass an interrupt undoes this call only, which costs a saved copy of
  // what it changes; in a pass of its own, dropping the pass is the undo.
  const bool undoable = !own_pass && static_cast<bool>(poll);
  try {
    if (!own_pass) validate_rows(rows);
    if constexpr (std::is_same_v<T, float>) {
      if (work_.saw_double) {
        throw InputError(
            "X is float32 but an earlier chunk of this pass was float64; pass "
            "the remaining chunks as float64");
      }
    } else {
      work_.saw_double = true;
    }
    add_rows(x, rows, poll, undoable);
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

namespace {
[[noreturn]] void refuse(const std::string& what) { throw InputError(what); }
}  // namespace

void ScatterAccumulator::validate_rows(const RowSet& rows) const {
  const Index n = rows.n;
  if (rows.index != nullptr) {
    for (Index i = 0; i < n; ++i) {
      if (rows.index[i] < 0 || rows.index[i] >= rows.x_rows) {
        std::ostringstream msg;
        msg << "row index[" << i << "] = " << rows.index[i] << " is not a row of X (" << rows.x_rows
            << " rows)";
        refuse(msg.str());
      }
    }
  } else if (rows.x_rows != n) {
    refuse("X's row count and the number of rows differ");
  }
  if (rows.has_labels()) {
    if (rows.y != nullptr || rows.w != nullptr)
      refuse("label weights take neither class indices nor sample weights");
    if (rows.indptr[0] != 0) refuse("indptr[0] must be 0 (label weights in CSR form)");
    // All of indptr first: with indptr[0] = 0 and indptr[n] = the entries (the bindings'
    // check), non-decreasing pointers keep every row's entries inside the arrays.
    for (Index i = 0; i < n; ++i) {
      if (rows.indptr[i + 1] < rows.indptr[i])
        refuse("indptr must not decrease (indptr[" + std::to_string(i + 1) + "] < indptr[" +
               std::to_string(i) + "])");
    }
    for (Index i = 0; i < n; ++i) {
      double total = 0.0;
      for (std::int64_t e = rows.indptr[i]; e < rows.indptr[i + 1]; ++e) {
        if (rows.cols[e] < 0 || rows.cols[e] >= c_) {
          std::ostringstream msg;
          msg << "label weight of row " << i << " names class " << rows.cols[e]
              << ", not a class index in [0, " << c_ << ")";
          refuse(msg.str());
        }
        if (!std::isfinite(rows.vals[e]) || rows.vals[e] < 0) {
          std::ostringstream msg;
          msg << "label weight of row " << i << " is " << rows.vals[e]
              << "; label weights must be finite and >= 0";
          refuse(msg.str());
        }
        total += rows.vals[e];
      }
      if (!std::isfinite(total)) {
        refuse("the label weights of row " + std::to_string(i) + " sum to infinity");
      }
    }
    return;
  }
  for (Index i = 0; i < n; ++i) {
    if (rows.y[i] < 0 || rows.y[i] >= c_) {
      std::ostringstream msg;
      msg << "y[" << i << "] = " << rows.y[i] << " is not a class index in [0, " << c_ << ")";
      refuse(msg.str());
    }
  }
  if (rows.w != nullptr) {
    for (Index i = 0; i < n; ++i) {
      if (!std::isfinite(rows.w[i]) || rows.w[i] < 0) {
        std::ostringstream msg;
        msg << "sample_weight[" << i << "] = " << rows.w[i] << "; weights must be finite and >= 0";
        refuse(msg.str());
      }
    }
  }
}

}  // namespace lrf
