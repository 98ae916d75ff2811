#include "fixed_blas.hpp"

#include <cblas.h>

#include <algorithm>

#include "labelranker/blas.hpp"

namespace lrf::fixed {

namespace {

using blas::checked_int;

// Chunk widths: wide enough for BLAS-3 rates on one core, narrow enough to share the
// solver's sizes (a few hundred to a few thousand) over a few threads.
constexpr Index kColumns = 128;   // output columns of a syrk chunk
constexpr Index kRows = 128;      // rows of a trsm_right_lower_t chunk
constexpr Index kRhs = 256;       // right-hand sides of a solve_lower chunk
constexpr Index kDiagonal = 128;  // rows of solve_lower's diagonal blocks

Index chunks(Index n, Index width) { return (n + width - 1) / width; }

void gemm(bool ta, bool tb, Index m, Index n, Index k, double alpha, const double* a, Index lda,
          const double* b, Index ldb, double beta, double* c, Index ldc) {
  if (m == 0 || n == 0) return;
  scipy_cblas_dgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    checked_int(m), checked_int(n), checked_int(k), alpha, a, checked_int(lda), b,
                    checked_int(ldb), beta, c, checked_int(ldc));
}

void syrk(bool upper, bool transpose, Index n, Index k, double alpha, const double* a, Index lda,
          double beta, double* c, Index ldc) {
  scipy_cblas_dsyrk(CblasColMajor, upper ? CblasUpper : CblasLower,
                    transpose ? CblasTrans : CblasNoTrans, checked_int(n), checked_int(k), alpha, a,
                    checked_int(lda), beta, c, checked_int(ldc));
}

void trsm(bool left, bool transpose, Index m, Index n, const double* l, Index ldl, double* b,
          Index ldb) {
  scipy_cblas_dtrsm(CblasColMajor, left ? CblasLeft : CblasRight, CblasLower,
                    transpose ? CblasTrans : CblasNoTrans, CblasNonUnit, checked_int(m),
                    checked_int(n), 1.0, l, checked_int(ldl), b, checked_int(ldb));
}

}  // namespace

void syrk_upper(Team& team, bool transpose, Index n, Index k, double alpha, const double* a,
                Index lda, double beta, double* c, Index ldc) {
  const Index count = chunks(n, kColumns);
  // Chunk i: the output columns of block count - 1 - i (the widest first, for balance),
  // the rectangle above its diagonal block by gemm and the diagonal block by syrk.
  team.chunks(count, [&](std::int64_t i) {
    const Index j = (count - 1 - i) * kColumns, w = std::min(kColumns, n - j);
    const double* right = transpose ? a + j * lda : a + j;  // op(A)'s rows j..j + w
    gemm(transpose, !transpose, j, w, k, alpha, a, lda, right, lda, beta, c + j * ldc, ldc);
    syrk(true, transpose, w, k, alpha, right, lda, beta, c + j + j * ldc, ldc);
  });
}

void syrk_lower_sub(Team& team, Index n, Index k, const double* a, Index lda, double* c,
                    Index ldc) {
  // Chunk i: the output columns of block i, its diagonal block by syrk and the rectangle
  // below it by gemm (block 0 is the tallest).
  team.chunks(chunks(n, kColumns), [&](std::int64_t i) {
    const Index j = i * kColumns, w = std::min(kColumns, n - j);
    syrk(false, false, w, k, -1.0, a + j, lda, 1.0, c + j + j * ldc, ldc);
    gemm(false, true, n - j - w, w, k, -1.0, a + j + w, lda, a + j, lda, 1.0, c + (j + w) + j * ldc,
         ldc);
  });
}

void trsm_right_lower_t(Team& team, Index m, Index n, const double* l, Index ldl, double* b,
                        Index ldb) {
  team.chunks(chunks(m, kRows), [&](std::int64_t i) {
    const Index r = i * kRows;
    trsm(false, true, std::min(kRows, m - r), n, l, ldl, b + r, ldb);
  });
}

void solve_lower(Team& team, Index n, Index m, const double* l, Index ldl, double* b, Index ldb) {
  team.chunks(chunks(m, kRhs), [&](std::int64_t i) {
    const Index first = i * kRhs, w = std::min(kRhs, m - first);
    double* rhs = b + first * ldb;
    for (Index j = 0; j < n; j += kDiagonal) {
      const Index jb = std::min(kDiagonal, n - j);
      trsm(true, false, jb, w, l + j + j * ldl, ldl, rhs + j, ldb);
      gemm(false, false, n - j - jb, w, jb, -1.0, l + (j + jb) + j * ldl, ldl, rhs + j, ldb, 1.0,
           rhs + j + jb, ldb);
    }
  });
}

}  // namespace lrf::fixed
