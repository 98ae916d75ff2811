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

// y = g x for the symmetric n x n g, from its upper triangle (half the memory traffic of
// a gemv, which is what a Lanczos step costs); on one thread, as gemv.
void symv(const MatrixXd& g, const double* x, double* y) {
  const int n = blas::checked_int(g.rows());
  scipy_cblas_dsymv(CblasColMajor, CblasUpper, n, 1.0, g.data(), n, x, 1, 0.0, y, 1);
}

// Runs Lanczos on g until the top Ritz pair's residual estimate drops below the
// tolerance; its Ritz vector (unit) in *u and value in *theta. False when the budget ran
// out first or the iteration broke down before converging.
bool iterate(const MatrixXd& g, Index max_steps, double* theta, VectorXd* u) {
  const Index n = g.rows();
  MatrixXd q;
  allocate(q, n, max_steps + 1, "the Lanczos basis");
  VectorXd start(n), w(n), h(max_steps + 1), alpha(max_steps), beta(max_steps);
  fill_start(&start);
  q.col(0) = start;
  Eigen::SelfAdjointEigenSolver<MatrixXd> tri;
  for (Index j = 0; j < max_steps; ++j) {
    symv(g, q.col(j).data(), w.data());
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

bool lanczos_top(MatrixXd* g_inout, int threads, double* lambda, VectorXd* vector,
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
    if (!iterate(g, max_steps, &theta, &u)) return false;
    symv(g, u.data(), gu.data());
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
  if (cholesky_lower(&g, threads) >= 0) return false;
  *lambda = theta;
  *vector = std::move(u);
  return true;
}

}  // namespace lrf::solver_detail
