#include "solver_lanczos.hpp"

#include <cblas.h>
#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels.hpp"
#include "labelranker/blas.hpp"
#include "labelranker/memory.hpp"

namespace lrf::solver_detail {

namespace {

// Residual bound (relative to the eigenvalue) at which the Ritz pair is accepted: a few
// hundred ulps, the accuracy of a dense solver's eigenpairs at these sizes.
constexpr double kTolerance = 1e-13;
// The certificate's margin above the eigenvalue, relative: far above the rounding error of
// a Cholesky factorisation (about n eps), so that it does not fail spuriously.
constexpr double kMargin = 1e-10;
constexpr Index kCheckEvery = 4;  // steps between convergence checks of the Ritz value

// y = A x with A (rows x cols, column-major, leading dimension lda). dgemv on one thread:
// its multithreaded result may depend on how the columns were split.
void gemv(bool transpose, Index rows, Index cols, const double* a, Index lda, const double* x,
          double beta, double* y) {
  scipy_cblas_dgemv(CblasColMajor, transpose ? CblasTrans : CblasNoTrans, blas::checked_int(rows),
                    blas::checked_int(cols), 1.0, a, blas::checked_int(lda), x, 1, beta, y, 1);
}

// A fixed pseudo-random start (splitmix64): a data-independent vector has, with
// overwhelming probability, a component along the top eigenvector, whatever structure the
// data has (a start like the all-ones vector is orthogonal to it for centred data).
void fill_start(VectorXd* q) {
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  for (Index i = 0; i < q->size(); ++i) {
    state += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    (*q)[i] = static_cast<double>(z >> 11) * 0x1.0p-53 - 0.5;
  }
  q->normalize();
}

// y = g x + beta y for the symmetric n x n g (upper triangle, leading dimension ld), on
// one thread, as gemv.
void symv(Index n, const double* g, Index ld, const double* x, double beta, double* y) {
  scipy_cblas_dsymv(CblasColMajor, CblasUpper, blas::checked_int(n), 1.0, g, blas::checked_int(ld),
                    x, 1, beta, y, 1);
}

// y = g x for the symmetric g (upper triangle), what a Lanczos step costs, in two parts
// that the team's threads take at once. Part 0 is the leading h x h block; part 1 the
// columns from h on, which add to the rows above h as well (those rows get part 0's sum
// plus part 1's, in that order). Each part is a few serial BLAS calls on fixed ranges, so
// the bits do not depend on which thread took which part, or on whether one thread took
// both. With g reused step after step, each part stays in its own core's cache, where one
// dsymv streams the whole triangle through one core (at n = 768, 68 us against about 25).
class SplitProduct {
 public:
  SplitProduct(const MatrixXd& g, Team& team)
      : g_(g), team_(team), n_(g.rows()), h_(split_row(n_)), above_(h_) {}

  void multiply(const double* x, double* y) {
    team_.chunks(2, [&](std::int64_t part) {
      if (part == 0) {
        symv(h_, g_.data(), n_, x, 0.0, y);
        return;
      }
      const Index rest = n_ - h_;
      const double* right = g_.data() + h_ * n_;  // columns h.. of the rows above h
      gemv(false, h_, rest, right, n_, x + h_, 0.0, above_.data());
      gemv(true, h_, rest, right, n_, x, 0.0, y + h_);
      symv(rest, right + h_, n_, x + h_, 1.0, y + h_);
    });
    for (Index i = 0; i < h_; ++i) y[i] += above_[i];
  }

 private:
  // Part 0 does h^2 / 2 multiply-adds and part 1 about 2 h (n - h) + (n - h)^2 / 2 (its
  // rectangle is read twice): equal at h = 0.81 n. A multiple of 8, for aligned blocks.
  static Index split_row(Index n) {
    return std::clamp<Index>(static_cast<Index>(0.81 * static_cast<double>(n)) / 8 * 8, 1, n - 1);
  }

  const MatrixXd& g_;
  Team& team_;
  const Index n_, h_;
  VectorXd above_;  // part 1's sum for the rows above h
};

// Runs Lanczos on g until the top Ritz pair's residual estimate drops below the
// tolerance; its Ritz vector (unit) in *u and value in *theta. False when the budget ran
// out first or the iteration broke down before converging.
bool iterate(SplitProduct* g, Index n, Index max_steps, double* theta, VectorXd* u) {
  MatrixXd q;
  allocate(q, n, max_steps + 1, "the Lanczos basis");
  VectorXd start(n), w(n), h(max_steps + 1), alpha(max_steps), beta(max_steps);
  fill_start(&start);
  q.col(0) = start;
  Eigen::SelfAdjointEigenSolver<MatrixXd> tri;
  for (Index j = 0; j < max_steps; ++j) {
    g->multiply(q.col(j).data(), w.data());
    // Full reorthogonalisation, classical Gram-Schmidt twice: the basis stays orthonormal
    // to rounding, so Ritz values do not repeat and the residual estimate is reliable.
    alpha[j] = 0.0;
    for (int pass = 0; pass < 2; ++pass) {
      gemv(true, n, j + 1, q.data(), n, w.data(), 0.0, h.data());
      gemv(false, n, j + 1, q.data(), n, h.data(), 0.0, start.data());
      w -= start;
      alpha[j] += h[j];
    }
    beta[j] = w.norm();
    if (!std::isfinite(beta[j])) return false;
    const Index m = j + 1;
    if (m % kCheckEvery == 0 || m == max_steps || !(beta[j] > 0.0)) {
      tri.computeFromTridiagonal(alpha.head(m), beta.head(m - 1), Eigen::ComputeEigenvectors);
      if (tri.info() != Eigen::Success) return false;
      *theta = tri.eigenvalues()[m - 1];
      const VectorXd s = tri.eigenvectors().col(m - 1);
      if (beta[j] * std::abs(s[m - 1]) <= kTolerance * std::abs(*theta)) {
        *u = q.leftCols(m) * s;
        u->normalize();
        return true;
      }
    }
    if (!(beta[j] > 0.0)) return false;  // invariant subspace without a converged pair
    q.col(j + 1) = w / beta[j];
  }
  return false;
}

}  // namespace

bool lanczos_top(MatrixXd* g_inout, Team& team, double* lambda, VectorXd* vector,
                 bool* overwritten) {
  *overwritten = false;
  MatrixXd& g = *g_inout;
  const Index n = g.rows();
  // A budget at which Lanczos still costs less than a dense tridiagonalisation; the
  // problems it is meant for converge in a few dozen steps.
  const Index max_steps = std::min(n, std::max<Index>(64, n / 5));
  double theta = 0.0;
  VectorXd u, gu(n);
  {
    blas::SerialScope serial;
    SplitProduct product(g, team);
    if (!iterate(&product, n, max_steps, &theta, &u)) return false;
    product.multiply(u.data(), gu.data());
  }
  // The Rayleigh quotient of the unit Ritz vector (never above the largest eigenvalue, up
  // to rounding) and its true residual, which bounds its distance to some eigenvalue.
  theta = u.dot(gu);
  const double residual = (gu - theta * u).norm();
  if (!(theta > 0.0) || !(residual <= 4.0 * kTolerance * theta)) return false;
  // Certificate: sigma I - g positive definite (its Cholesky factorisation succeeds)
  // proves that every eigenvalue lies below sigma, so none was missed above theta by more
  // than the margin. Lanczos cannot miss it in exact arithmetic unless the start vector is
  // orthogonal to it; this check makes that case a fallback instead of a wrong answer.
  const double sigma = theta * (1.0 + kMargin) + 2.0 * residual;
  *overwritten = true;  // sigma I - g, factorised where g was (no n x n copy)
  kernels::shifted_negative_to_lower(g.data(), n, sigma);  // the triangle cholesky_lower reads
  if (cholesky_lower(&g, team) >= 0) return false;
  *lambda = theta;
  *vector = std::move(u);
  return true;
}

}  // namespace lrf::solver_detail
