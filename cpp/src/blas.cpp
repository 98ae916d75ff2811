// Binds the engine's BLAS wrappers to scipy-openblas32's prefixed C interfaces.
#include "labelranker/blas.hpp"

#include "labelranker/memory.hpp"

#include <cblas.h>
#include <lapacke.h>
#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" {
int scipy_openblas_get_num_threads(void);
void scipy_openblas_set_num_threads(int);
}

namespace lrf::blas {

int checked_int(index_t n) {
  if (n < 0 || n > std::numeric_limits<int>::max()) {
    throw std::length_error("dimension " + std::to_string(n) +
                            " is too large for 32-bit BLAS; split the input into chunks");
  }
  return static_cast<int>(n);
}

void syrk_upper(index_t n, index_t k, const float* a, index_t lda, float beta, float* c,
                index_t ldc) {
  scipy_cblas_ssyrk(CblasColMajor, CblasUpper, CblasNoTrans, checked_int(n), checked_int(k), 1.0f,
                    a, checked_int(lda), beta, c, checked_int(ldc));
}

void syrk_upper(index_t n, index_t k, const double* a, index_t lda, double beta, double* c,
                index_t ldc) {
  scipy_cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, checked_int(n), checked_int(k), 1.0, a,
                    checked_int(lda), beta, c, checked_int(ldc));
}

void gemm_rows(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, double alpha,
               const double* a, index_t lda, const double* b, index_t ldb, double beta, double* c,
               index_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, checked_int(m), checked_int(n),
                    checked_int(k), alpha, a, checked_int(lda), b, checked_int(ldb), beta, c,
                    checked_int(ldc));
}

void syr2k_upper_add(index_t n, index_t k, const double* a, index_t lda, const double* b,
                     index_t ldb, double* c, index_t ldc) {
  scipy_cblas_dsyr2k(CblasColMajor, CblasUpper, CblasNoTrans, checked_int(n), checked_int(k), 1.0,
                     a, checked_int(lda), b, checked_int(ldb), 1.0, c, checked_int(ldc));
}

int potrf_lower(index_t n, double* a, index_t lda) {
  return scipy_LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', checked_int(n), a, checked_int(lda));
}

void trsm_lower_left(bool transpose, index_t m, index_t nrhs, const double* l, index_t ldl,
                     double* b, index_t ldb) {
  scipy_cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, transpose ? CblasTrans : CblasNoTrans,
                    CblasNonUnit, checked_int(m), checked_int(nrhs), 1.0, l, checked_int(ldl), b,
                    checked_int(ldb));
}

int syevr_largest(index_t n, index_t count, double* a, index_t lda, double* w, double* z,
                  index_t ldz) {
  const int ni = checked_int(n);
  const int lo = ni - checked_int(count) + 1;  // LAPACK's 1-based index range [lo, n]
  int found = 0;
  // LAPACK documents W with N entries even when fewer eigenvalues are asked for; Z and
  // ISUPPZ need max(1, M) columns, M = count.
  std::vector<double> all;
  std::vector<int> isuppz;
  allocate_vector(all, ni, "the eigenvalues of dsyevr");
  allocate_vector(isuppz, 2 * std::max<index_t>(count, 1), "the support of dsyevr's eigenvectors");
  const int info =
      scipy_LAPACKE_dsyevr(LAPACK_COL_MAJOR, 'V', 'I', 'U', ni, a, checked_int(lda), 0.0, 0.0, lo,
                           ni, 0.0, &found, all.data(), z, checked_int(ldz), isuppz.data());
  // M < count (with info 0) is what non-finite input gets, which callers rule out first.
  if (info == 0 && found != count) return -1000 - found;
  std::copy(all.begin(), all.begin() + count, w);
  return info;
}

int n_threads() { return scipy_openblas_get_num_threads(); }
void set_n_threads(int n) { scipy_openblas_set_num_threads(n); }

namespace {
std::mutex scope_mutex;
std::condition_variable serial_done;
int scopes_active = 0;   // guarded by scope_mutex
int size_before = 1;     // the pool's size before the first active scope
bool serial = false;     // a SerialScope holds the pool at one thread
int serial_restore = 1;  // what the pool returns to when it ends
int fork_restore = 0;    // in a forked child: the size its parent's SerialScope would restore

// A child forked while another thread holds a SerialScope has no such thread: the flag
// would block every scope in the child forever. The mutex is held across fork() so that
// the child copies a consistent state, and the child gets a fresh mutex and condition
// variable (the parent's waiters stay counted in the copied ones). ThreadScopes of other
// threads stay counted (a pass's scope, owned by an accumulator, does live on in the child),
// which can only keep the child's pool at the size of the last scope.
void fork_prepare() { scope_mutex.lock(); }
void fork_parent() { scope_mutex.unlock(); }
void fork_child() {
  new (&scope_mutex) std::mutex();
  new (&serial_done) std::condition_variable();
  if (serial && scopes_active == 0) fork_restore = serial_restore;
  serial = false;
}
[[maybe_unused]] const int fork_handlers = pthread_atfork(fork_prepare, fork_parent, fork_child);

// The size a forked child's pool had before its parent's SerialScope (OpenBLAS is not
// resized inside the fork handler itself, where starting threads is unsafe).
void restore_after_fork() {
  if (fork_restore > 0 && scopes_active == 0) set_n_threads(fork_restore);
  fork_restore = 0;
}
}  // namespace

void set_size_outside_scopes(int n) {
  std::lock_guard<std::mutex> lock(scope_mutex);
  fork_restore = 0;
  if (scopes_active > 0) size_before = n;  // restored when the last ThreadScope ends
  else if (serial) serial_restore = n;     // restored when the SerialScope ends
  else set_n_threads(n);
}

ThreadScope::ThreadScope(int n) {
  std::unique_lock<std::mutex> lock(scope_mutex);
  serial_done.wait(lock, [] { return !serial; });
  restore_after_fork();
  if (scopes_active++ == 0) size_before = n_threads();
  if (n_threads() != n) set_n_threads(n);
}

ThreadScope::~ThreadScope() {
  std::lock_guard<std::mutex> lock(scope_mutex);
  if (--scopes_active != 0) return;
  if (serial) serial_restore = size_before;  // restored when the serial scope ends
  else if (n_threads() != size_before) set_n_threads(size_before);
}

namespace {
thread_local int serial_depth = 0;  // SerialScopes this thread holds (nested ones are no-ops)
}  // namespace

SerialScope::SerialScope() {
  if (serial_depth++ > 0) return;
  std::unique_lock<std::mutex> lock(scope_mutex);
  serial_done.wait(lock, [] { return !serial; });
  restore_after_fork();
  serial = true;
  serial_restore = n_threads();
  if (serial_restore != 1) set_n_threads(1);
}

SerialScope::~SerialScope() {
  if (--serial_depth > 0) return;
  {
    std::lock_guard<std::mutex> lock(scope_mutex);
    serial = false;
    if (n_threads() != serial_restore) set_n_threads(serial_restore);
  }
  serial_done.notify_all();
}

}  // namespace lrf::blas
