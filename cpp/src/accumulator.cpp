#include "labelranker/accumulator.hpp"

// ScatterAccumulator's state, passes, merging and the statistics read from it (the
// update path is in accumulate.cpp).
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "labelranker/blas.hpp"
#include "labelranker/errors.hpp"
#include "labelranker/memory.hpp"

namespace lrf {
namespace {

// upper(dst) += upper(src), both n x n column-major with leading dimension n.
template <class T>
void add_upper(double* dst, const T* src, Index n) {
  for (Index j = 0; j < n; ++j) {
    double* __restrict__ d = dst + j * n;
    const T* __restrict__ s = src + j * n;
    for (Index i = 0; i <= j; ++i) d[i] += static_cast<double>(s[i]);
  }
}

MatrixXd symmetric_from_upper(const MatrixXd& upper, const char* what) {
  return allocating<double>(upper.rows(), upper.cols(), what, [&] {
    MatrixXd full = upper.selfadjointView<Eigen::Upper>();
    return full;
  });
}

}  // namespace

ScatterAccumulator::ScatterAccumulator(Unallocated, Index n_features, Index num_classes)
    : d_(n_features), c_(num_classes),
      threads_(std::max(1, static_cast<int>(std::thread::hardware_concurrency()))) {
  if (n_features < 1) throw InputError("n_features must be at least 1, got " + std::to_string(n_features));
  if (num_classes < 2) throw InputError("num_classes must be at least 2, got " + std::to_string(num_classes));
  blas::checked_int(n_features);
}

ScatterAccumulator::ScatterAccumulator(Index n_features, Index num_classes)
    : ScatterAccumulator(Unallocated{}, n_features, num_classes) {
  // Largest first: a size that cannot exist fails before anything is written.
  allocate_zero(m2_, d_, d_, "the second moment");
  allocate_zero(sums_, c_, d_, "the class sums");
  allocate_zero(shifts_, c_, d_, "the class shifts");
  allocate_zero(counts_, c_, 1, "the class counts");
}

void ScatterAccumulator::set_num_threads(int n) {
  if (n < 1) throw InputError("n_threads must be >= 1, got " + std::to_string(n));
  threads_ = n;
}

void ScatterAccumulator::begin_pass() {
  if (work_.open) throw InputError("a pass is already open on this accumulator");
  Workspace& ws = work_;
  if (ws.counts.size() != c_) {
    allocate_zero(ws.counts, c_, 1, "the pass's class counts");
    allocate(ws.shifts, c_, d_, "the pass's class shifts");
    allocate_zero(ws.sums, c_, d_, "the pass's class sums");
    allocate_vector(ws.touched, c_, "the pass's class flags", char{0});
    allocate_vector(ws.saved, c_, "the pass's class flags", char{0});
    allocating<std::int64_t>(c_, -1, "the pass's class list", [&] { ws.classes.reserve(c_); });
  }
  if (ws.moment.rows() != d_) allocate(ws.moment, d_, d_, "the pass's second moment");
  ws.classes.clear();
  ws.rows = 0;
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
  counts = VectorXd();
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
    ws.counts[k] = 0;
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
    for (Index k : ws.classes) counts[k] = ws.counts[k];
    if (ws.has_moment) absorb(ws.classes, counts, ws.shifts, ws.sums, ws.moment, ws.rows);
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
    ws.sums.row(k) = Eigen::Map<const Eigen::RowVectorXd>(saved, d_);
    ws.counts[k] = saved[d_];
    saved += d_ + 1;
  }
  ws.clear_saved();
  for (std::size_t i = classes_before; i < ws.classes.size(); ++i) {
    const Index k = ws.classes[i];  // first seen in the undone call: empty before it
    ws.sums.row(k).setZero();
    ws.counts[k] = 0;
    ws.touched[k] = 0;
  }
  ws.classes.resize(classes_before);
  ws.saw_double = saw_double_before;
}

void ScatterAccumulator::absorb(const std::vector<Index>& classes, const VectorXd& counts,
                                const RowMatrixXd& shifts, const RowMatrixXd& sums,
                                const MatrixXd& m2_upper, std::int64_t rows) {
  // Moving class k's statistics from shift a to shift b = a - delta (delta = a - b):
  //   sums  T' = T + n delta
  //   m2    M' = M + delta T^T + T delta^T + n delta delta^T
  //           = M + D^T V + V^T D  with rows D_k = delta_k, V_k = T_k + (n_k / 2) delta_k.
  // The result is built beside the state and checked before it replaces it: statistics
  // that would overflow (weights summing to infinity, n_rows past 2^63) are refused and
  // leave the accumulator as it was.
  std::int64_t new_rows = 0;
  if (__builtin_add_overflow(n_rows_, rows, &new_rows)) {
    throw InputError("the number of rows would overflow a 64-bit integer");
  }
  MatrixXd new_m2 = copy_of(m2_, "the merged second moment");
  RowMatrixXd new_sums = copy_of(sums_, "the merged class sums");
  RowMatrixXd new_shifts = copy_of(shifts_, "the merged class shifts");
  VectorXd new_counts = copy_of(counts_, "the merged class counts");
  RowMatrixXd D, V;
  for (Index k : classes) {
    const double n_k = counts[k];
    if (n_k <= 0) continue;
    if (counts_[k] <= 0) {
      new_shifts.row(k) = shifts.row(k);
      new_sums.row(k) = sums.row(k);
    } else {
      const Eigen::RowVectorXd delta = shifts.row(k) - shifts_.row(k);
      if (!delta.isZero(0.0)) {
        if (D.rows() == 0) {
          allocate_zero(D, c_, d_, "the shift changes of a merge");
          allocate_zero(V, c_, d_, "the shift changes of a merge");
        }
        D.row(k) = delta;
        V.row(k) = sums.row(k) + (0.5 * n_k) * delta;
        new_sums.row(k) += sums.row(k) + n_k * delta;
      } else {
        new_sums.row(k) += sums.row(k);
      }
    }
    new_counts[k] += n_k;
  }
  add_upper(new_m2.data(), m2_upper.data(), d_);
  if (D.rows() != 0) {
    const MatrixXd cross = allocating<double>(d_, d_, "the moment change of a merge",
                                              [&] { return MatrixXd(D.transpose() * V); });
    const MatrixXd sym = allocating<double>(d_, d_, "the moment change of a merge",
                                            [&] { return MatrixXd(cross + cross.transpose()); });
    add_upper(new_m2.data(), sym.data(), d_);
  }
  // Each class's part of diag(M) is a sum of squares, so diag(M) >= 0; re-expressing a
  // shift subtracts terms, and when rows' squares underflowed (deviations or weights far
  // below 1) while their sums did not, rounding can leave a diagonal entry a few ulps
  // below zero. It is set to zero: closer to the exact value, and a valid state.
  for (Index j = 0; j < d_; ++j) new_m2(j, j) = std::max(new_m2(j, j), 0.0);
  bool finite = new_counts.allFinite() && new_m2.diagonal().allFinite();
  for (Index k : classes) finite = finite && new_sums.row(k).allFinite();
  if (!finite) {
    throw InputError("the statistics would overflow (weights or squared features too large to "
                     "add up in float64); rescale the features or the weights");
  }
  n_rows_ = new_rows;
  counts_.swap(new_counts);
  shifts_.swap(new_shifts);
  sums_.swap(new_sums);
  m2_.swap(new_m2);
}

void ScatterAccumulator::merge(const ScatterAccumulator& other) {
  if (other.d_ != d_ || other.c_ != c_) {
    std::ostringstream msg;
    msg << "cannot merge an accumulator of " << other.d_ << " features and " << other.c_
        << " classes into one of " << d_ << " features and " << c_ << " classes";
    throw InputError(msg.str());
  }
  // merge(*this) needs no copy: absorb reads its arguments before it replaces the state.
  std::vector<Index> classes;
  for (Index k = 0; k < c_; ++k)
    if (other.counts_[k] > 0) classes.push_back(k);
  absorb(classes, other.counts_, other.shifts_, other.sums_, other.m2_, other.n_rows_);
}

RowMatrixXd ScatterAccumulator::relative_means(Eigen::RowVectorXd* reference) const {
  Index first = 0;
  while (first < c_ && counts_[first] <= 0) ++first;
  *reference = first < c_ ? Eigen::RowVectorXd(shifts_.row(first)) : Eigen::RowVectorXd::Zero(d_);
  RowMatrixXd rel;
  allocate(rel, c_, d_, "the class means");
  for (Index k = 0; k < c_; ++k) {
    if (counts_[k] > 0) {
      rel.row(k) = (shifts_.row(k) - *reference) + sums_.row(k) / counts_[k];
    } else {
      rel.row(k).setConstant(std::numeric_limits<double>::quiet_NaN());
    }
  }
  return rel;
}

RowMatrixXd ScatterAccumulator::class_means() const {
  Eigen::RowVectorXd ref;
  RowMatrixXd means = relative_means(&ref);
  means.rowwise() += ref;
  return means;
}

Eigen::RowVectorXd ScatterAccumulator::weighted_mean(const RowMatrixXd& rows) const {
  Eigen::RowVectorXd mu = Eigen::RowVectorXd::Zero(d_);
  const double total = total_weight();
  for (Index k = 0; k < c_; ++k)
    if (counts_[k] > 0) mu += (counts_[k] / total) * rows.row(k);
  return mu;
}

VectorXd ScatterAccumulator::global_mean() const {
  if (!(total_weight() > 0)) return VectorXd::Constant(d_, std::numeric_limits<double>::quiet_NaN());
  Eigen::RowVectorXd ref;
  const RowMatrixXd rel = relative_means(&ref);
  return (ref + weighted_mean(rel)).transpose();
}

RowMatrixXd ScatterAccumulator::centered_means() const {
  Eigen::RowVectorXd ref;
  RowMatrixXd rel = relative_means(&ref);
  const Eigen::RowVectorXd mu = weighted_mean(rel);
  rel.rowwise() -= mu;
  return rel;
}

MatrixXd ScatterAccumulator::within_scatter() const {
  // S_w = M - sum_k T_k T_k^T / n_k = M - R^T R with rows R_k = T_k / sqrt(n_k).
  RowMatrixXd r;
  allocate_zero(r, c_, d_, "the scaled class sums");
  for (Index k = 0; k < c_; ++k)
    if (counts_[k] > 0) r.row(k) = sums_.row(k) / std::sqrt(counts_[k]);
  MatrixXd correction;
  allocate(correction, d_, d_, "the within-class scatter");
  blas::syrk_upper(d_, c_, r.data(), d_, 0.0, correction.data(), d_);
  // S_w in the upper triangle of `correction`, then mirrored: the same values as
  // symmetric_from_upper(m2_ - correction) without two more d x d arrays.
  for (Index j = 0; j < d_; ++j)
    for (Index i = 0; i <= j; ++i) correction(i, j) = m2_(i, j) - correction(i, j);
  for (Index j = 0; j < d_; ++j)
    for (Index i = j + 1; i < d_; ++i) correction(i, j) = correction(j, i);
  return correction;
}

MatrixXd ScatterAccumulator::between_factor() const {
  const RowMatrixXd centered = centered_means();
  MatrixXd factor;
  allocate(factor, d_, c_, "the between-class factor");
  for (Index k = 0; k < c_; ++k) {
    if (counts_[k] > 0) factor.col(k) = std::sqrt(counts_[k]) * centered.row(k).transpose();
    else factor.col(k).setZero();
  }
  return factor;
}

void ScatterAccumulator::require_all_classes() const {
  if (!(total_weight() > 0)) {
    throw SingularError("the accumulator is empty (no samples with positive weight): call "
                        "update() before ranking");
  }
  std::vector<Index> empty;
  for (Index k = 0; k < c_; ++k)
    if (!(counts_[k] > 0)) empty.push_back(k);
  if (empty.empty()) return;
  std::ostringstream msg;
  msg << empty.size() << " of " << c_ << " classes have no samples (class indices ";
  for (std::size_t i = 0; i < empty.size() && i < 10; ++i) msg << (i ? ", " : "") << empty[i];
  if (empty.size() > 10) msg << ", ...";
  msg << "); every class needs at least one sample to be ranked";
  throw SingularError(msg.str());
}

AccumulatorState ScatterAccumulator::export_state() const {
  AccumulatorState s;
  s.n_features = d_;
  s.num_classes = c_;
  s.n_rows = n_rows_;
  s.m2 = symmetric_from_upper(m2_, "a copy of the second moment");
  s.sums = copy_of(sums_, "a copy of the class sums");
  s.shifts = copy_of(shifts_, "a copy of the class shifts");
  s.counts = copy_of(counts_, "a copy of the class counts");
  return s;
}

ScatterAccumulator ScatterAccumulator::from_state(AccumulatorState s) {
  const Index d = s.n_features, c = s.num_classes;
  auto fail = [](const std::string& what) { throw InputError("invalid accumulator state: " + what); };
  if (d < 1 || c < 2) fail("n_features must be >= 1 and num_classes >= 2");
  // The given arrays are checked against the claimed sizes before anything of those
  // sizes is allocated (a tiny file claiming a huge d must not allocate d x d).
  if (s.counts.size() != c) fail("counts must have num_classes entries");
  if (s.shifts.rows() != c || s.shifts.cols() != d) fail("shifts must be (num_classes, n_features)");
  if (s.sums.rows() != c || s.sums.cols() != d) fail("sums must be (num_classes, n_features)");
  if (s.m2.rows() != d || s.m2.cols() != d) fail("m2 must be (n_features, n_features)");
  if (s.n_rows < 0) fail("n_rows must be >= 0");
  if (!s.counts.allFinite() || (s.counts.array() < 0).any()) fail("counts must be finite and >= 0");
  if (!s.shifts.allFinite() || !s.sums.allFinite() || !s.m2.allFinite()) fail("arrays must be finite");
  const double asym = (s.m2 - s.m2.transpose()).cwiseAbs().maxCoeff();
  if (asym > 1e-12 * std::max(1.0, s.m2.cwiseAbs().maxCoeff())) fail("m2 must be symmetric");
  if ((s.m2.diagonal().array() < 0).any()) fail("m2 must have a non-negative diagonal");
  ScatterAccumulator acc(Unallocated{}, d, c);
  acc.n_rows_ = s.n_rows;
  acc.counts_ = std::move(s.counts);
  acc.shifts_ = std::move(s.shifts);
  acc.sums_ = std::move(s.sums);
  acc.m2_ = std::move(s.m2);
  return acc;
}

}  // namespace lrf
