#include "labelranker/accumulator.hpp"

// ScatterAccumulator's construction, merging and the statistics read from it. Passes and
// update() are in pass.cpp, the rows' path in accumulate.cpp, the state's export and
// validation in state.cpp.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "fixed_blas.hpp"
#include "kernels.hpp"
#include "labelranker/blas.hpp"
#include "labelranker/errors.hpp"
#include "labelranker/memory.hpp"

namespace lrf {

void throw_overflow() {
  throw InputError(
      "the statistics would overflow (weights or squared features too large to "
      "add up in float64); rescale the features or the weights");
}

namespace {

// Each class's part of diag(M) is a sum of squares, so diag(M) >= 0; re-expressing a
// shift subtracts terms, and when rows' squares underflowed (deviations or weights far
// below 1) while their sums did not, rounding can leave a diagonal entry a few ulps below
// zero. It is set to zero: closer to the exact value, and a valid state.
void clamp_diagonal(MatrixXd* m2) {
  for (Index j = 0; j < m2->rows(); ++j) (*m2)(j, j) = std::max((*m2)(j, j), 0.0);
}

}  // namespace
ScatterAccumulator::ScatterAccumulator(Unallocated, Index n_features, Index num_classes)
    : d_(n_features),
      c_(num_classes),
      n_threads_(std::max(1, static_cast<int>(std::thread::hardware_concurrency()))) {
  if (n_features < 1)
    throw InputError("n_features must be at least 1, got " + std::to_string(n_features));
  if (num_classes < 2)
    throw InputError("num_classes must be at least 2, got " + std::to_string(num_classes));
  blas::checked_int(n_features);
}

ScatterAccumulator::ScatterAccumulator(Index n_features, Index num_classes)
    : ScatterAccumulator(Unallocated{}, n_features, num_classes) {
  // Largest first: a size that cannot exist fails before anything is written.
  // The C x d tables wait for the first statistics (absorb, adopt_pass): an accumulator
  // without them reads as all zeros.
  allocate_zero(m2_, d_, d_, "the second moment");
  allocate_zero(class_counts_, c_, 1, "the class counts");
  shifts_.resize(0, d_);
  sums_.resize(0, d_);
}

void ScatterAccumulator::set_n_threads(int n) {
  if (n < 1) throw InputError("n_threads must be >= 1, got " + std::to_string(n));
  n_threads_ = n;
}

void ScatterAccumulator::absorb(const std::vector<Index>& classes, const VectorXd& class_counts,
                                const RowMatrixXd& shifts, const RowMatrixXd& sums,
                                const MatrixXd& m2_upper, std::int64_t n_samples) {
  // Moving class k's statistics from shift a to shift b = a - delta (delta = a - b):
  //   sums  T' = T + n delta
  //   m2    M' = M + delta T^T + T delta^T + n delta delta^T
  //           = M + D^T V + V^T D  with rows D_k = delta_k, V_k = T_k + (n_k / 2) delta_k
  // (only for the classes whose shift moves; a pass keeps the accumulator's shifts, so a
  // commit moves none). Everything is computed and checked before the state is written,
  // in place: statistics that would overflow (weights summing to infinity, a row count
  // past 2^63) are refused and leave the accumulator as it was.
  std::int64_t new_n_samples = 0;
  if (__builtin_add_overflow(n_samples_, n_samples, &new_n_samples)) {
    throw InputError("the number of rows would overflow a 64-bit integer");
  }
  std::vector<Index> added, moved;  // classes with weight; those whose shift moves
  for (Index k : classes) {
    if (!(class_counts[k] > 0)) continue;
    added.push_back(k);
    if (class_counts_[k] > 0 && shifts.row(k) != shifts_.row(k)) moved.push_back(k);
  }
  // The moment is updated in place, after the check below: M += M_other (upper triangles)
  // and, for moved classes, + D^T V + V^T D (one BLAS syr2k over those classes only).
  RowMatrixXd D, V;
  if (!moved.empty()) {
    const Index L = static_cast<Index>(moved.size());
    allocate(D, L, d_, "the shift changes of a merge");
    allocate(V, L, d_, "the shift changes of a merge");
    for (Index j = 0; j < L; ++j) {
      const Index k = moved[j];
      D.row(j) = shifts.row(k) - shifts_.row(k);
      V.row(j) = sums.row(k) + (0.5 * class_counts[k]) * D.row(j);
    }
  }
  // No entry of the new moment may overflow: each is bounded by |M_ij| + |M'_ij| +
  // |D_i||V_j| + |V_i||D_j| (columns of D and V), checked with a factor 2 to spare.
  const VectorXd dn = moved.empty() ? VectorXd::Zero(d_) : VectorXd(D.colwise().norm());
  const VectorXd vn = moved.empty() ? VectorXd::Zero(d_) : VectorXd(V.colwise().norm());
  const double limit = 0.5 * std::numeric_limits<double>::max();
  bool finite = true;
  for (Index j = 0; j < d_; ++j) {
    for (Index i = 0; i <= j; ++i) {
      const double bound =
          std::abs(m2_(i, j)) + std::abs(m2_upper(i, j)) + dn[i] * vn[j] + vn[i] * dn[j];
      finite = finite && bound < limit;  // false for NaN too
    }
  }
  // The new sums row of class k (the j-th moved class, or -1), as an expression.
  std::size_t next_moved = 0;
  auto new_row = [&](Index k, Index j) -> RowVectorXd {
    if (!(class_counts_[k] > 0)) return sums.row(k);
    if (j < 0) return sums_.row(k) + sums.row(k);
    return sums_.row(k) + (sums.row(k) + class_counts[k] * D.row(j));
  };
  for (Index k : added) {
    const Index j = next_moved < moved.size() && moved[next_moved] == k ? next_moved++ : -1;
    finite =
        finite && std::isfinite(class_counts_[k] + class_counts[k]) && new_row(k, j).allFinite();
  }
  if (!finite) {
    throw_overflow();
  }
  if (shifts_.rows() != c_) {  // the first statistics: the tables are allocated now
    RowMatrixXd zero_shifts, zero_sums;
    allocate_zero(zero_shifts, c_, d_, "the class shifts");
    allocate_zero(zero_sums, c_, d_, "the class sums");
    shifts_.swap(zero_shifts);
    sums_.swap(zero_sums);
  }
  next_moved = 0;
  for (Index k : added) {  // from here on nothing throws
    const Index j = next_moved < moved.size() && moved[next_moved] == k ? next_moved++ : -1;
    sums_.row(k) = new_row(k, j);
    if (!(class_counts_[k] > 0)) shifts_.row(k) = shifts.row(k);
    class_counts_[k] += class_counts[k];
  }
  kernels::add_upper(m2_.data(), m2_upper.data(), d_);
  if (!moved.empty()) {  // D, V row-major L x d: as column-major d x L, D^T V = A B^T
    blas::syr2k_upper_add(d_, D.rows(), D.data(), d_, V.data(), d_, m2_.data(), d_);
  }
  clamp_diagonal(&m2_);
  n_samples_ = new_n_samples;
}

void ScatterAccumulator::adopt_pass(const MatrixXd& moment_upper) {
  // The first statistics of an accumulator without tables: the pass's shifts and sums
  // become the state's (no copy), with the rows of classes without weight in the pass
  // zeroed. The values are those absorb would write.
  Workspace& ws = work_;
  VectorXd counts;
  allocate_zero(counts, c_, 1, "the class counts");
  std::vector<char> keep(static_cast<std::size_t>(c_), 0);
  bool finite = true;
  for (Index k : ws.classes) {
    if (!(ws.class_counts[k] > 0)) continue;
    keep[k] = 1;
    counts[k] = ws.class_counts[k];
    // (single-label sums were checked as they were formed, class_blocks.cpp)
    finite = finite && std::isfinite(counts[k]) && (!ws.has_labels || ws.sums.row(k).allFinite());
  }
  // m2_ is all zeros here (no statistics yet): it takes the moment's upper triangle in
  // place, once the diagonal is known to be finite.
  if (!finite || !moment_upper.diagonal().allFinite()) {
    throw_overflow();
  }
  for (Index k = 0; k < c_; ++k) {
    if (keep[k]) continue;
    ws.shifts.row(k).setZero();
    ws.sums.row(k).setZero();
  }
  shifts_.swap(ws.shifts);  // the workspace is left without tables: begin_pass makes new ones
  sums_.swap(ws.sums);
  class_counts_.swap(counts);
  kernels::add_upper(m2_.data(), moment_upper.data(), d_);
  clamp_diagonal(&m2_);
  n_samples_ = ws.n_samples;
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
    if (other.class_counts_[k] > 0) classes.push_back(k);
  absorb(classes, other.class_counts_, other.shifts_, other.sums_, other.m2_, other.n_samples_);
}

RowMatrixXd ScatterAccumulator::relative_means(RowVectorXd* reference, RowVectorXd* mean) const {
  Index first = 0;
  while (first < c_ && class_counts_[first] <= 0) ++first;
  *reference = first < c_ ? RowVectorXd(shifts_.row(first)) : RowVectorXd::Zero(d_);
  RowMatrixXd rel;
  allocate(rel, c_, d_, "the class means");
  if (mean != nullptr) mean->setZero(d_);
  const double total = total_weight();
  for (Index k = 0; k < c_; ++k) {
    if (class_counts_[k] > 0) {
      rel.row(k) = (shifts_.row(k) - *reference) + sums_.row(k) * (1.0 / class_counts_[k]);
      // taken while the row is still in cache
      if (mean != nullptr) *mean += (class_counts_[k] / total) * rel.row(k);
    } else {
      rel.row(k).setConstant(std::numeric_limits<double>::quiet_NaN());
    }
  }
  return rel;
}

RowMatrixXd ScatterAccumulator::class_means() const {
  RowVectorXd ref;
  RowMatrixXd means = relative_means(&ref);
  means.rowwise() += ref;
  return means;
}

VectorXd ScatterAccumulator::global_mean() const {
  if (!(total_weight() > 0))
    return VectorXd::Constant(d_, std::numeric_limits<double>::quiet_NaN());
  RowVectorXd ref, mu;
  relative_means(&ref, &mu);
  return (ref + mu).transpose();
}

RowMatrixXd ScatterAccumulator::centered_means() const {
  RowVectorXd ref, mu;
  RowMatrixXd rel = relative_means(&ref, &mu);
  rel.rowwise() -= mu;
  return rel;
}

MatrixXd ScatterAccumulator::within_scatter(double scale, bool* finite, Team* team) const {
  // scale S_w = scale M - R^T R with rows R_k = T_k sqrt(scale / n_k) (S_w = M - sum_k
  // T_k T_k^T / n_k), taken by one syrk into a scaled copy of M (kept in its upper
  // triangle).
  RowMatrixXd r;
  allocate(r, c_, d_, "the scaled class sums");
  for (Index k = 0; k < c_; ++k) {
    if (class_counts_[k] > 0) r.row(k) = sums_.row(k) * std::sqrt(scale / class_counts_[k]);
    else r.row(k).setZero();
  }
  MatrixXd out;
  allocate(out, d_, d_, "the within-class scatter");
  for (Index j = 0; j < d_; ++j) out.col(j).head(j + 1) = m2_.col(j).head(j + 1) * scale;
  const auto subtract = [&](Team& t) {
    blas::SerialScope serial;  // see fixed_blas.hpp
    fixed::syrk_upper(t, false, d_, c_, -1.0, r.data(), d_, 1.0, out.data(), d_);
  };
  if (team != nullptr) subtract(*team);
  else Team::run(n_threads_, subtract);
  const bool ok = kernels::mirror_upper(out.data(), d_);
  if (finite != nullptr) *finite = ok;
  return out;
}

void ScatterAccumulator::solver_inputs(double total, RowMatrixXd* centered, VectorXd* mean,
                                       MatrixXd* factor, bool* finite) const {
  // The relative means and their weighted mean in one pass, then the centring and the
  // factor in another.
  RowVectorXd reference, mu;
  *centered = relative_means(&reference, &mu);
  *mean = (reference + mu).transpose();
  if (!(total_weight() > 0)) mean->setConstant(std::numeric_limits<double>::quiet_NaN());
  allocate(*factor, d_, c_, "the between-class factor");
  const double root_total = std::sqrt(total);
  bool ok = true;
  for (Index k = 0; k < c_; ++k) {
    centered->row(k) -= mu;
    if (class_counts_[k] > 0) {
      factor->col(k) = (std::sqrt(class_counts_[k]) / root_total) * centered->row(k).transpose();
      ok = ok && factor->col(k).allFinite();
    } else {
      factor->col(k).setZero();
    }
  }
  *finite = ok;
}

MatrixXd ScatterAccumulator::between_factor() const { return between_factor(centered_means()); }

MatrixXd ScatterAccumulator::between_factor(const RowMatrixXd& centered) const {
  MatrixXd factor;
  allocate(factor, d_, c_, "the between-class factor");
  for (Index k = 0; k < c_; ++k) {
    if (class_counts_[k] > 0)
      factor.col(k) = std::sqrt(class_counts_[k]) * centered.row(k).transpose();
    else factor.col(k).setZero();
  }
  return factor;
}

void ScatterAccumulator::require_all_classes() const {
  if (!(total_weight() > 0)) {
    throw SingularError(
        "the accumulator is empty (no samples with positive weight): call "
        "update() before ranking");
  }
  std::vector<Index> empty;
  for (Index k = 0; k < c_; ++k)
    if (!(class_counts_[k] > 0)) empty.push_back(k);
  if (empty.empty()) return;
  std::ostringstream msg;
  msg << empty.size() << " of " << c_ << " classes have no samples (class indices ";
  for (std::size_t i = 0; i < empty.size() && i < 10; ++i) msg << (i ? ", " : "") << empty[i];
  if (empty.size() > 10) msg << ", ...";
  msg << "); every class needs at least one sample to be ranked";
  throw SingularError(msg.str());
}

}  // namespace lrf
