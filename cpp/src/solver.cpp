#include "labelranker/solver.hpp"

#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "fixed_blas.hpp"
#include "kernels.hpp"
#include "labelranker/blas.hpp"
#include "labelranker/errors.hpp"
#include "labelranker/memory.hpp"
#include "solver_lanczos.hpp"

namespace lrf {

namespace solver_detail {

// S = L L^T in place (lower triangle), blocked right-looking with a fixed block size: each
// diagonal block by dpotrf on one thread (its blocking depends on the thread count; faster
// here than Eigen's, which is built for SSE2), the panel below it and the trailing matrix
// by the fixed-chunk trsm and syrk Narrow blocks keep the serial part small: at
// n = 768, 64 took 2.5 ms where 256 took 3.3.
Index cholesky_lower(MatrixXd* a, Team& team) {
  constexpr Index kBlock = 64;
  blas::SerialScope serial;
  const Index n = a->rows();
  for (Index j = 0; j < n; j += kBlock) {
    const Index jb = std::min(kBlock, n - j);
    const int info = blas::potrf_lower(jb, &(*a)(j, j), n);
    if (info > 0) return j + info - 1;
    if (info < 0) throw std::runtime_error("dpotrf failed with info " + std::to_string(info));
    const Index m = n - j - jb;
    if (m > 0) {
      fixed::trsm_right_lower_t(team, m, jb, &(*a)(j, j), n, &(*a)(j + jb, j), n);
      fixed::syrk_lower_sub(team, m, jb, &(*a)(j + jb, j), n, &(*a)(j + jb, j + jb), n);
    }
  }
  return -1;
}

}  // namespace solver_detail

double oas_shrinkage(const MatrixXd& cov, double total_weight) {
  // The estimate is scale-invariant, but tr(S^2) overflows for entries near 1e154 and
  // underflows near 1e-154: it is computed on S scaled by a power of two that brings the
  // largest entry to [0.5, 1). Scaling by a power of two is exact, so ordinary inputs get
  // bit-identical results.
  const double largest = cov.cwiseAbs().maxCoeff();
  int exponent = 0;
  if (largest > 0.0 && std::isfinite(largest)) std::frexp(largest, &exponent);
  const double scale = std::ldexp(1.0, -exponent);
  const double p = static_cast<double>(cov.rows());
  const double mu = (cov * scale).trace() / p;
  const double alpha = (cov * scale).squaredNorm() / (p * p);
  const double num = alpha + mu * mu;
  const double den = (total_weight + 1.0) * (alpha - mu * mu / p);
  return den == 0.0 ? 1.0 : std::min(num / den, 1.0);
}

void orient_columns(MatrixXd* directions) {
  for (Index j = 0; j < directions->cols(); ++j) {
    Index arg = 0;
    directions->col(j).cwiseAbs().maxCoeff(&arg);  // first index of the maximum
    if ((*directions)(arg, j) < 0) directions->col(j) *= -1.0;
  }
}

namespace {

using solver_detail::cholesky_lower;

[[noreturn]] void throw_singular(Index feature, const Shrinkage& shrinkage, double total_weight,
                                 Index d) {
  std::ostringstream msg;
  msg << "the within-class scatter is singular: feature " << feature
      << " is constant within every class or a linear combination of other features ("
      << total_weight << " samples, " << d << " features). ";
  if (shrinkage.kind == Shrinkage::Kind::kNone) {
    msg << "Pass shrinkage='oas' or a shrinkage in (0, 1] to regularise it.";
  } else {
    msg << "The shrinkage used is too small to regularise it; use shrinkage='oas' or a larger "
           "value, and check that the features vary within classes.";
  }
  throw SingularError(msg.str());
}

// Between-class spreads of more than about 1e154 within-class standard deviations square
// past float64 (the eigenvalues themselves are then not representable).
[[noreturn]] void throw_overflow(const Shrinkage& shrinkage) {
  std::string msg =
      "the discriminant problem overflows float64: the class means are more than about 1e150 "
      "within-class standard deviations apart (the within-class scatter is nearly singular "
      "relative to the between-class scatter). Check for features that are (nearly) constant "
      "within classes; ";
  msg += shrinkage.kind == Shrinkage::Kind::kNone
             ? "shrinkage='oas' or a shrinkage in (0, 1] regularises them when other features vary."
             : "a larger shrinkage regularises them when other features vary.";
  throw SingularError(msg);
}

// dsyevr on one BLAS thread (its dsymv's result depends on the thread count), the
// `count` largest eigenpairs of the n x n matrix a.
void top_eigenpairs(MatrixXd* a, Index count, VectorXd* w, MatrixXd* z) {
  const Index n = a->rows();
  int info = 0;
  {
    blas::SerialScope serial;
    info = blas::syevr_largest(n, count, a->data(), n, w->data(), z->data(), n);
  }
  if (info == LAPACK_WORK_MEMORY_ERROR) {
    throw OutOfMemory(26 * n, -1, sizeof(double), "float64", "the workspace of dsyevr");
  }
  if (info != 0) throw std::runtime_error("dsyevr failed with info " + std::to_string(info));
}

// Smallest Gram matrix for which the top pair alone comes from Lanczos: below it the
// dense solve costs little more than the Lanczos steps.
constexpr Index kLanczosMinSize = 256;

// The k largest eigenpairs of an n x n Gram matrix of the whitened between-class factor
// (A^T A or A A^T, the same nonzero eigenvalues), whose upper triangle fill(gram) writes.
// Eigenvalues descending in *lambda, eigenvectors in the returned columns (same order);
// *trace is the sum of all eigenvalues. Only the k pairs wanted are computed: for k = 1 by
// certified Lanczos (O(n^2) per step), otherwise or when that fails by dsyevr's subset mode
// (which still tridiagonalises all of the matrix).
template <class Fill>
MatrixXd top_of_gram(Index n, Index k, Team& team, const Shrinkage& shrinkage, VectorXd* lambda,
                     double* trace, Fill fill) {
  MatrixXd gram;
  allocate(gram, n, n, "the between-class Gram matrix");
  fill(gram.data());
  // Only the upper triangle is written, and read (by Lanczos, its certificate and dsyevr).
  // Every entry of the whitened factor enters a diagonal entry of the Gram matrix as a
  // square, so this check catches the factor's overflow too.
  if (!kernels::upper_finite(gram.data(), n)) throw_overflow(shrinkage);
  *trace = gram.trace();
  lambda->resize(k);
  VectorXd top;
  bool overwritten = false;
  if (k == 1 && n >= kLanczosMinSize &&
      solver_detail::lanczos_top(&gram, team, &(*lambda)[0], &top, &overwritten)) {
    return top;
  }
  if (overwritten) fill(gram.data());  // the certificate failed in the Gram matrix's place
  VectorXd w(k);
  MatrixXd v;
  allocate(v, n, k, "the Gram matrix's eigenvectors");
  top_eigenpairs(&gram, k, &w, &v);
  for (Index j = 0; j < k; ++j) (*lambda)[j] = w[k - 1 - j];  // LAPACK returns ascending order
  for (Index j = 0; j < k / 2; ++j) v.col(j).swap(v.col(k - 1 - j));
  return v;
}

}  // namespace

Discriminant solve_discriminant(MatrixXd within_cov, MatrixXd between_factor,
                                const Shrinkage& shrinkage, Index k, double total_weight,
                                Team& team) {
  blas::SerialScope serial;  // each BLAS call on its own thread (see fixed_blas.hpp)
  const Index d = within_cov.rows();
  const Index c = between_factor.cols();
  const Index max_k = std::min(c - 1, d);
  if (k < 1 || k > max_k) {
    std::ostringstream msg;
    msg << "n_components must be in [1, min(n_classes - 1, n_features)] = [1, " << max_k
        << "], got " << k;
    throw InputError(msg.str());
  }

  Discriminant out;
  MatrixXd& s = within_cov;  // factored in place
  switch (shrinkage.kind) {
    case Shrinkage::Kind::kNone:
      out.shrinkage = 0.0;
      break;
    case Shrinkage::Kind::kFixed:
      out.shrinkage = shrinkage.value;
      break;
    case Shrinkage::Kind::kOas:
      out.shrinkage = oas_shrinkage(s, total_weight);
      break;
  }
  if (!(out.shrinkage >= 0.0 && out.shrinkage <= 1.0)) {
    throw InputError("shrinkage must be in [0, 1], got " + std::to_string(out.shrinkage));
  }
  if (out.shrinkage > 0.0) {
    const double target = s.trace() / static_cast<double>(d);
    s *= 1.0 - out.shrinkage;
    s.diagonal().array() += out.shrinkage * target;
  }

  // S = L L^T. LAPACK stops at the first non-positive pivot; we also reject pivots that are
  // rounding noise relative to their feature's variance (a numerically singular S).
  const VectorXd variance = s.diagonal();
  const Index bad_pivot = cholesky_lower(&s, team);
  if (bad_pivot >= 0) throw_singular(bad_pivot, shrinkage, total_weight, d);
  for (Index i = 0; i < d; ++i) {
    const double pivot = s(i, i) * s(i, i);
    if (!(variance[i] > 0.0) || !(pivot > kSingularPivot * variance[i]))
      throw_singular(i, shrinkage, total_weight, d);
  }

  // A = L^{-1} M (d x C); its top left singular vectors from the smaller Gram matrix.
  MatrixXd& a = between_factor;  // whitened in place
  fixed::solve_lower(team, d, c, s.data(), d, a.data(), d);
  MatrixXd u;  // (a's overflow is caught in its Gram matrix)
  allocate(u, d, k, "the discriminant directions");
  VectorXd lambda;
  if (c <= d) {
    // A^T A (C x C): its eigenvectors v give u = A v / sqrt(lambda).
    MatrixXd v = top_of_gram(
        c, k, team, shrinkage, &lambda, &out.eigenvalue_sum,
        [&](double* gram) { fixed::syrk_upper(team, true, c, d, 1.0, a.data(), d, 0.0, gram, c); });
    for (Index j = 0; j < k; ++j) u.col(j) = a * v.col(j);
  } else {
    // A A^T (d x d): its eigenvectors are u itself (scaled here so that both branches
    // divide by sqrt(lambda) below).
    MatrixXd v =
        top_of_gram(d, k, team, shrinkage, &lambda, &out.eigenvalue_sum, [&](double* gram) {
          fixed::syrk_upper(team, false, d, c, 1.0, a.data(), d, 0.0, gram, d);
        });
    for (Index j = 0; j < k; ++j) u.col(j) = v.col(j) * std::sqrt(std::max(lambda[j], 0.0));
  }

  // Directions with zero between-class variance carry no order.
  const double top = lambda[0];
  if (!(top > 0.0) || !std::isfinite(top)) {
    throw SingularError(
        "the class means are identical (between-class scatter is zero), so there is no order "
        "to find");
  }
  for (Index j = 0; j < k; ++j) {
    if (!(lambda[j] > 1e-12 * top)) {
      std::ostringstream msg;
      msg << "only " << j << " discriminant direction(s) separate the class means; ask for "
          << "n_components <= " << j;
      throw SingularError(msg.str());
    }
    u.col(j) /= std::sqrt(lambda[j]);  // unit left singular vectors
  }

  // W = L^{-T} U (k columns: one serial call).
  blas::trsm_lower_left(true, d, k, s.data(), d, u.data(), d);
  if (!u.allFinite()) throw_overflow(shrinkage);
  orient_columns(&u);
  out.directions = std::move(u);
  out.eigenvalues = lambda;
  return out;
}

}  // namespace lrf
