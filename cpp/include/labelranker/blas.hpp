// Thin, typed wrappers over the few BLAS/LAPACK routines the engine needs.
//
// They come from OpenBLAS as shipped in the scipy-openblas32 wheel (the build numpy and
// SciPy use): 32-bit integers, CPU dispatch at run time, symbols prefixed `scipy_`.
// Everything here works on column-major storage, as BLAS does.
#pragma once

#include <cstdint>

namespace lrf::blas {

using index_t = std::int64_t;

// C (n x n, upper triangle) = alpha * A * A^T + beta * C, with A n x k column-major
// (equivalently: the k x n row-major matrix Z, giving Z^T Z).
void syrk_upper(index_t n, index_t k, const float* a, index_t lda, float beta, float* c,
                index_t ldc);
void syrk_upper(index_t n, index_t k, const double* a, index_t lda, double beta, double* c,
                index_t ldc);
// C (m x n) = alpha * op(A) op(B) + beta * C, all row-major; op(A) is m x k (A^T if
// trans_a), op(B) k x n (B^T if trans_b).
void gemm_rows(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, double alpha,
               const double* a, index_t lda, const double* b, index_t ldb, double beta, double* c,
               index_t ldc);

// C (n x n, upper triangle) += A B^T + B A^T, A and B n x k column-major.
void syr2k_upper_add(index_t n, index_t k, const double* a, index_t lda, const double* b,
                     index_t ldb, double* c, index_t ldc);

// Cholesky A = L L^T in place (lower triangle). Returns LAPACK's info (0 on success).
// OpenBLAS's blocking here depends on the thread count (the solver calls it on one thread,
// for the diagonal blocks of its own blocked Cholesky).
int potrf_lower(index_t n, double* a, index_t lda);

// B (m x nrhs) <- L^{-1} B (transpose = false) or L^{-T} B (transpose = true).
void trsm_lower_left(bool transpose, index_t m, index_t nrhs, const double* l, index_t ldl,
                     double* b, index_t ldb);

// The `count` largest eigenpairs of the symmetric n x n matrix A (upper triangle used,
// destroyed; it must be finite). Eigenvalues ascending in w[0..count), eigenvectors in the
// count columns of z. Returns LAPACK's info (LAPACK_WORK_MEMORY_ERROR when LAPACKE could not
// allocate its workspace of about 26 n doubles and 10 n ints).
int syevr_largest(index_t n, index_t count, double* a, index_t lda, double* w, double* z,
                  index_t ldz);

// OpenBLAS's thread pool, which every routine above uses.
int n_threads();
void set_n_threads(int n);
// Sets the pool's size as seen outside the scopes below: now when none is active, else
// when the last one ends, so that no scope's serial BLAS turns multithreaded midway.
void set_size_outside_scopes(int n);

// Sets the pool's size for the lifetime of the object and restores it afterwards. Scopes
// may nest and overlap across threads: the pool takes the latest scope's size, and the
// size from before the first scope returns when the last one ends.
class ThreadScope {
 public:
  explicit ThreadScope(int n);
  ~ThreadScope();
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;
};

// Runs the pool on one thread for the lifetime of the object, whatever other threads' scopes
// ask meanwhile (they wait for it to end before they change the size). A thread may nest
// them (the inner ones do nothing); it must not open a ThreadScope inside one. For results
// that must not depend on the thread count: OpenBLAS's dsymv (inside LAPACK's dsytrd, so
// dsyevr) adds per-thread partial sums, dpotrf's blocking follows the thread count, and
// even gemm, syrk and trsm, which split their output between threads, give different last
// bits at some shapes (measured: dgemm 572 x 900 x 128, dsyrk 444 x 256). The solver holds
// one throughout and spreads its products over threads itself (fixed_blas.hpp).
class SerialScope {
 public:
  SerialScope();
  ~SerialScope();
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;
};

// Throws std::length_error if n does not fit BLAS's 32-bit integers.
int checked_int(index_t n);

}  // namespace lrf::blas
