// The solver's level-3 products with the same bits for every thread count.
//
// OpenBLAS's multithreaded gemm, syrk and trsm do not give the same bits for every thread
// count at every shape (measured on the development machine: dgemm 572 x 900 x 128, dsyrk
// 444 x 256, dtrsm 700 x 900 differ between 1 and 2 threads). Here each product is cut into
// chunks of a fixed size, independent of the thread count; each chunk is one set of serial
// BLAS calls, and the chunks are spread over a Team's threads. Every output entry is written by
// one chunk, so the bits depend only on the chunking, never on the thread count or on
// which thread took which chunk. Engine-internal; all matrices column-major.
//
// Callers hold a blas::SerialScope (the pool at one thread) for as long as they use these,
// so that each BLAS call runs on the thread that makes it.
#pragma once

#include "labelranker/types.hpp"
#include "labelranker/workers.hpp"

namespace lrf::fixed {

// C (n x n, upper triangle) = alpha op(A) op(A)^T + beta C, with op(A) = A (n x k) or, when
// transpose, A^T (A is k x n).
void syrk_upper(Team& team, bool transpose, Index n, Index k, double alpha, const double* a,
                Index lda, double beta, double* c, Index ldc);

// C (n x n, lower triangle) -= A A^T, A n x k.
void syrk_lower_sub(Team& team, Index n, Index k, const double* a, Index lda, double* c, Index ldc);

// B (m x n) <- B L^{-T}, L n x n lower triangular.
void trsm_right_lower_t(Team& team, Index m, Index n, const double* l, Index ldl, double* b,
                        Index ldb);

// B (n x m) <- L^{-1} B, L n x n lower triangular: for each chunk of B's columns, the
// diagonal blocks of L by trsm and the rows below them by gemm (gemm runs at about twice
// the rate of OpenBLAS's trsm on these shapes).
void solve_lower(Team& team, Index n, Index m, const double* l, Index ldl, double* b, Index ldb);

}  // namespace lrf::fixed
