#include "labelranker/accumulator.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>

#include "labelranker/blas.hpp"
#include "labelranker/errors.hpp"

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

// upper(dst) (+)= upper(src) * 2^(2 e): a block moment computed from rows scaled by 2^-e.
// The factor is applied as two exact multiplications by 2^e (2^(2e) itself may not be
// representable); with e = 0 this is the plain sum (or copy), bit for bit.
template <class T>
void fold_upper_scaled(double* dst, const T* src, Index n, int e, bool assign) {
  const double g = std::ldexp(1.0, e);
  for (Index j = 0; j < n; ++j) {
    double* __restrict__ d = dst + j * n;
    const T* __restrict__ s = src + j * n;
    for (Index i = 0; i <= j; ++i) {
      const double v = (static_cast<double>(s[i]) * g) * g;
      d[i] = assign ? v : d[i] + v;
    }
  }
}

// Weighted rows enter the moment as z = (x - s) sqrt(w), computed at input precision. For
// weights far from 1 (float32: sqrt(w) below 2^-126 or z^2 past 2^128) a block's rows are
// scaled by 2^-e, e the binary exponent of the block's largest sqrt(w), and its moment by
// 2^(2e) in float64: exact, and weights that differ by a constant factor give the same
// statistics up to that factor. Within +-kWeightExpSlack nothing is scaled.
constexpr int kWeightExpSlack = 32;

int block_weight_exponent(const double* w, Index n) {
  if (w == nullptr) return 0;
  double wmax = 0.0;
  for (Index i = 0; i < n; ++i) wmax = std::max(wmax, w[i]);
  if (!(wmax > 0.0)) return 0;
  int e = 0;
  std::frexp(std::sqrt(wmax), &e);
  return (e > kWeightExpSlack || e < -kWeightExpSlack) ? e : 0;
}

MatrixXd symmetric_from_upper(const MatrixXd& upper) {
  MatrixXd full = upper.selfadjointView<Eigen::Upper>();
  return full;
}

// The rows of each class are shifted by s_k; this is the value of s_k at input precision,
// so that (x - s_k) is computed exactly for x close to s_k (Sterbenz).
template <class T>
double round_to(double v) {
  return static_cast<double>(static_cast<T>(v));
}

// One row of the centring pass, the only O(n d) loop: z = (x - s) * sqrt(w) * scale,
// acc += w (x - s); scale is 2^-e of block_weight_exponent.
// Cloned for AVX-512 and AVX2 on x86-64 (chosen at load time); the rest of the build stays
// baseline.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LRF_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LRF_CLONES
#endif
#define LRF_CENTER_ROW(T)                                                                    \
  LRF_CLONES void center_row(                                                                \
      const T* __restrict__ x, const T* __restrict__ s, T* __restrict__ z,                  \
      double* __restrict__ acc, Index d, const double* weight, double scale) {              \
    if (weight == nullptr) {                                                                 \
      for (Index j = 0; j < d; ++j) {                                                        \
        const T v = x[j] - s[j];                                                             \
        z[j] = v;                                                                            \
        acc[j] += static_cast<double>(v);                                                    \
      }                                                                                      \
    } else {                                                                                 \
      const double w = *weight;                                                              \
      const T root = static_cast<T>(std::sqrt(w) * scale);                                   \
      for (Index j = 0; j < d; ++j) {                                                        \
        const T v = x[j] - s[j];                                                             \
        z[j] = v * root;                                                                     \
        acc[j] += w * static_cast<double>(v);                                                \
      }                                                                                      \
    }                                                                                        \
  }
LRF_CENTER_ROW(float)
LRF_CENTER_ROW(double)
#undef LRF_CENTER_ROW
#undef LRF_CLONES

}  // namespace

ScatterAccumulator::ScatterAccumulator(Index n_features, Index num_classes)
    : d_(n_features), c_(num_classes),
      threads_(std::max(1, static_cast<int>(std::thread::hardware_concurrency()))) {
  if (n_features < 1) throw InputError("n_features must be at least 1, got " + std::to_string(n_features));
  if (num_classes < 2) throw InputError("num_classes must be at least 2, got " + std::to_string(num_classes));
  blas::checked_int(n_features);
  counts_ = VectorXd::Zero(c_);
  shifts_ = RowMatrixXd::Zero(c_, d_);
  sums_ = RowMatrixXd::Zero(c_, d_);
  m2_ = MatrixXd::Zero(d_, d_);
}

void ScatterAccumulator::update(const float* x, Index n, const std::int64_t* y, const double* w) {
  update_impl(x, n, y, w);
}

void ScatterAccumulator::update(const double* x, Index n, const std::int64_t* y, const double* w) {
  update_impl(x, n, y, w);
}

struct ScatterAccumulator::Lane {
  std::vector<float> rows_f, moment_f;  // float32 input: centred block and its moment
  std::vector<double> rows_d, moment_d;  // float64 input
  RowMatrixXd sums;                      // (C x d) the block's shifted sums
  VectorXd counts;                       // (C)
  std::vector<char> touched;             // (C)
  std::vector<Index> classes;            // classes in the block
  int weight_exp = 0;                    // the block's rows are scaled by 2^-weight_exp

  template <class T>
  std::vector<T>& rows() {
    if constexpr (std::is_same_v<T, float>) return rows_f; else return rows_d;
  }
  template <class T>
  std::vector<T>& moment() {
    if constexpr (std::is_same_v<T, float>) return moment_f; else return moment_d;
  }
};


void ScatterAccumulator::set_num_threads(int n) {
  if (n < 1) throw InputError("n_threads must be >= 1, got " + std::to_string(n));
  threads_ = n;
}

void ScatterAccumulator::begin_pass() {
  if (work_.open) throw InputError("a pass is already open on this accumulator");
  Workspace& ws = work_;
  if (ws.counts.size() != c_) {
    ws.counts = VectorXd::Zero(c_);
    ws.shifts.resize(c_, d_);
    ws.sums = RowMatrixXd::Zero(c_, d_);
    ws.touched.assign(static_cast<std::size_t>(c_), 0);
  }
  if (ws.moment.rows() != d_) ws.moment.resize(d_, d_);
  ws.classes.clear();
  ws.rows = 0;
  ws.has_moment = false;
  ws.saw_double = false;
  ws.open = true;
  // Our workers run the BLAS single-threaded; holding that setting for the whole pass
  // spares OpenBLAS a resize of its pool (and its idle threads' spinning) per call.
  ws.serial_blas = std::make_unique<blas::ThreadScope>(1);
}

void ScatterAccumulator::Workspace::release() {
  moment = MatrixXd();
  shifts = RowMatrixXd();
  sums = RowMatrixXd();
  shifts_f.resize(0, 0);
  counts = VectorXd();
  std::vector<char>().swap(touched);
  std::vector<Index>().swap(classes);
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
  ws.serial_blas.reset();
  work_.open = false;
}

void ScatterAccumulator::commit_pass() {
  if (!work_.open) throw InputError("no pass is open on this accumulator");
  Workspace& ws = work_;
  VectorXd counts = VectorXd::Zero(c_);
  for (Index k : ws.classes) counts[k] = ws.counts[k];
  try {
    if (ws.has_moment) absorb(ws.classes, counts, ws.shifts, ws.sums, ws.moment, ws.rows);
  } catch (...) {
    abort_pass();  // a refused pass is dropped whole: the accumulator stays as it was
    throw;
  }
  abort_pass();  // clears the workspace
}

template <class T>
void ScatterAccumulator::update_impl(const T* x, Index n, const std::int64_t* y, const double* w) {
  if (n < 0) throw InputError("negative number of rows");
  if (n == 0) return;
  const bool own_pass = !work_.open;
  if (own_pass) {
    validate_rows(n, y, w);  // before the pass opens: nothing to undo
    begin_pass();
  }
  try {
    if (!own_pass) validate_rows(n, y, w);
    if constexpr (std::is_same_v<T, float>) {
      if (work_.saw_double) {
        throw InputError("X is float32 but an earlier chunk of this pass was float64; pass "
                         "the remaining chunks as float64");
      }
    } else {
      work_.saw_double = true;
    }
    add_rows(x, n, y, w);
  } catch (...) {
    abort_pass();  // an error anywhere in a pass drops the whole pass
    throw;
  }
  if (own_pass) commit_pass();
}

void ScatterAccumulator::validate_rows(Index n, const std::int64_t* y, const double* w) const {
  for (Index i = 0; i < n; ++i) {
    if (y[i] < 0 || y[i] >= c_) {
      std::ostringstream msg;
      msg << "y[" << i << "] = " << y[i] << " is not a class index in [0, " << c_ << ")";
      throw InputError(msg.str());
    }
  }
  if (w != nullptr) {
    for (Index i = 0; i < n; ++i) {
      if (!std::isfinite(w[i]) || w[i] < 0) {
        std::ostringstream msg;
        msg << "sample_weight[" << i << "] = " << w[i] << "; weights must be finite and >= 0";
        throw InputError(msg.str());
      }
    }
  }
}

template <class T>
void ScatterAccumulator::add_rows(const T* x, Index n, const std::int64_t* y, const double* w) {
  // The rows' statistics go to the workspace and reach the accumulator only when the pass
  // commits, so an invalid row leaves the accumulator as it was.
  Workspace& ws = work_;
  if constexpr (std::is_same_v<T, float>) {
    if (ws.shifts_f.rows() != c_) ws.shifts_f.resize(c_, d_);
  }

  // Shifts are fixed once per pass, when a class first appears in it: the accumulator's
  // shift, or for a class without one the mean of its first kShiftRows rows in this call;
  // rounded to input precision (so x - s is exact near s).
  std::vector<Index> fresh;                    // classes whose shift is set in this call
  std::vector<Index> taken(static_cast<std::size_t>(c_), -1);  // rows averaged, if fresh
  {
    Index fresh_open = 0;
    for (Index i = 0; i < n; ++i) {
      const Index k = y[i];
      if (!ws.touched[k]) {
        ws.touched[k] = 1;
        ws.classes.push_back(k);
        fresh.push_back(k);
        if (counts_[k] > 0) {
          ws.shifts.row(k) = shifts_.row(k);
          continue;
        }
        ws.shifts.row(k).setZero();
        taken[k] = 0;
        ++fresh_open;
      } else if (taken[k] < 0 || taken[k] >= kShiftRows) {
        if (fresh_open == 0 && ws.classes.size() == static_cast<std::size_t>(c_)) break;
        continue;
      }
      ws.shifts.row(k) += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(x + i * d_, d_).template cast<double>();
      if (++taken[k] == kShiftRows) --fresh_open;
    }
    for (Index k : fresh) {
      if (taken[k] > 0) ws.shifts.row(k) /= static_cast<double>(taken[k]);
      for (Index j = 0; j < d_; ++j) ws.shifts(k, j) = round_to<T>(ws.shifts(k, j));
      if constexpr (std::is_same_v<T, float>) ws.shifts_f.row(k) = ws.shifts.row(k).template cast<float>();
    }
  }
  const T* shift_base;
  if constexpr (std::is_same_v<T, float>) shift_base = ws.shifts_f.data();
  else shift_base = ws.shifts.data();

  // Blocks are processed by `lanes` workers (the calling thread is one of them); each block's
  // moment is computed by one single-threaded syrk, then added to the call's moment in
  // block order.
  // Rows are centred and multiplied in sub-blocks small enough for the centred copy to stay
  // in L2 cache between the two; the sub-blocks' products add up in the block's moment.
  const Index sub_rows = std::max<Index>(64, (Index{1} << 20) / (d_ * Index(sizeof(T))));
  const Index n_blocks = (n + kBlockRows - 1) / kBlockRows;
  const Index lanes = std::max<Index>(1, std::min<Index>(threads_, n_blocks));
  while (static_cast<Index>(ws.lanes.size()) < lanes) ws.lanes.push_back(std::make_shared<Lane>());
  for (Index l = 0; l < lanes; ++l) {
    Lane& lane = *ws.lanes[l];
    const std::size_t block_size = static_cast<std::size_t>(std::min(n, sub_rows) * d_);
    if (lane.rows<T>().size() < block_size) lane.rows<T>().resize(block_size);
    if (lane.moment<T>().size() != static_cast<std::size_t>(d_ * d_)) lane.moment<T>().resize(static_cast<std::size_t>(d_ * d_));
    if (lane.counts.size() != c_) {
      lane.counts = VectorXd::Zero(c_);
      lane.sums = RowMatrixXd::Zero(c_, d_);
      lane.touched.assign(static_cast<std::size_t>(c_), 0);
    }
  }

  auto process_block = [&](Lane& lane, Index b) {
    const Index start = b * kBlockRows;
    const Index rows = std::min(kBlockRows, n - start);
    T* zb = lane.rows<T>().data();
    lane.classes.clear();
    lane.weight_exp = block_weight_exponent(w == nullptr ? nullptr : w + start, rows);
    const double scale = std::ldexp(1.0, -lane.weight_exp);
    for (Index sub = 0; sub < rows; sub += sub_rows) {
      const Index sub_end = std::min(rows, sub + sub_rows);
      for (Index r = sub; r < sub_end; ++r) {
        const Index i = start + r;
        const Index k = y[i];
        if (!lane.touched[k]) {
          lane.touched[k] = 1;
          lane.classes.push_back(k);
        }
        const double wr = w == nullptr ? 1.0 : w[i];
        center_row(x + i * d_, shift_base + k * d_, zb + (r - sub) * d_, lane.sums.row(k).data(), d_,
                   w == nullptr ? nullptr : &wr, scale);
        lane.counts[k] += wr;
      }
      blas::syrk_upper(d_, sub_end - sub, zb, d_, sub == 0 ? T(0) : T(1), lane.moment<T>().data(), d_);
    }
  };

  auto reduce_block = [&](Lane& lane, Index b) {
    fold_upper_scaled(ws.moment.data(), lane.moment<T>().data(), d_, lane.weight_exp,
                      b == 0 && !ws.has_moment);
    for (Index k : lane.classes) {
      ws.sums.row(k) += lane.sums.row(k);
      ws.counts[k] += lane.counts[k];
      lane.sums.row(k).setZero();
      lane.counts[k] = 0;
      lane.touched[k] = 0;
    }
  };

  if (lanes == 1) {
    // One block: the BLAS may use our threads, unless a pass keeps it serial throughout.
    std::optional<blas::ThreadScope> blas_threads;
    if (!ws.serial_blas) blas_threads.emplace(threads_);
    for (Index b = 0; b < n_blocks; ++b) {
      process_block(*ws.lanes[0], b);
      reduce_block(*ws.lanes[0], b);
    }
  } else {
    blas::ThreadScope serial_blas(1);  // our workers each run the BLAS on one thread
    std::atomic<Index> next{0};
    std::mutex mutex;
    std::condition_variable turn;
    Index reduced = 0;  // blocks reduced so far (guarded by mutex)
    bool failed = false;
    std::exception_ptr error;
    auto work = [&](Lane& lane) {
      try {
        for (Index b = next++; b < n_blocks; b = next++) {
          process_block(lane, b);
          std::unique_lock<std::mutex> lock(mutex);
          turn.wait(lock, [&] { return reduced == b || failed; });
          if (failed) return;
          reduce_block(lane, b);
          ++reduced;
          turn.notify_all();
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!failed) error = std::current_exception();
        failed = true;
        turn.notify_all();
      }
    };
    std::vector<std::thread> pool;
    for (Index l = 1; l < lanes; ++l) pool.emplace_back(work, std::ref(*ws.lanes[l]));
    work(*ws.lanes[0]);
    for (auto& t : pool) t.join();
    if (error) {
      for (auto& lane : ws.lanes) {
        lane->sums.setZero();
        lane->counts.setZero();
        std::fill(lane->touched.begin(), lane->touched.end(), 0);
      }
      ws.sums.setZero();
      ws.counts.setZero();
      std::fill(ws.touched.begin(), ws.touched.end(), 0);
      std::rethrow_exception(error);
    }
  }

  // A non-finite feature (or shift) makes a centred value non-finite and with it the
  // moment's diagonal; so does a square that overflows. O(d) to check per call.
  ws.has_moment = true;
  ws.rows += n;
  if (!ws.moment.diagonal().allFinite()) throw_non_finite(x, n, w);
}

template <class T>
void ScatterAccumulator::throw_non_finite(const T* x, Index n, const double* w) const {
  for (Index i = 0; i < n; ++i) {
    for (Index j = 0; j < d_; ++j) {
      if (!std::isfinite(x[i * d_ + j])) {
        std::ostringstream msg;
        msg << "X contains NaN or infinity (X[" << i << ", " << j << "] = " << x[i * d_ + j]
            << "); remove or impute non-finite features before ranking";
        throw InputError(msg.str());
      }
    }
  }
  throw InputError(std::string("X has values whose ") + (w != nullptr ? "weighted " : "") +
                   "squares overflow " +
                   (std::is_same_v<T, float> ? "float32; pass float64 features" : "float64") +
                   " (rescale the features)");
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
  VectorXd new_counts = counts_;
  RowMatrixXd new_shifts = shifts_, new_sums = sums_;
  MatrixXd new_m2 = m2_;
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
          D = RowMatrixXd::Zero(c_, d_);
          V = RowMatrixXd::Zero(c_, d_);
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
    const MatrixXd cross = D.transpose() * V;
    const MatrixXd sym = cross + cross.transpose();
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
  if (&other == this) {
    const ScatterAccumulator copy = other;
    merge(copy);
    return;
  }
  std::vector<Index> classes;
  for (Index k = 0; k < c_; ++k)
    if (other.counts_[k] > 0) classes.push_back(k);
  absorb(classes, other.counts_, other.shifts_, other.sums_, other.m2_, other.n_rows_);
}

RowMatrixXd ScatterAccumulator::relative_means(Eigen::RowVectorXd* reference) const {
  Index first = 0;
  while (first < c_ && counts_[first] <= 0) ++first;
  *reference = first < c_ ? Eigen::RowVectorXd(shifts_.row(first)) : Eigen::RowVectorXd::Zero(d_);
  RowMatrixXd rel(c_, d_);
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
  RowMatrixXd r = RowMatrixXd::Zero(c_, d_);
  for (Index k = 0; k < c_; ++k)
    if (counts_[k] > 0) r.row(k) = sums_.row(k) / std::sqrt(counts_[k]);
  MatrixXd correction(d_, d_);
  blas::syrk_upper(d_, c_, r.data(), d_, 0.0, correction.data(), d_);
  MatrixXd s = m2_;
  for (Index j = 0; j < d_; ++j)
    for (Index i = 0; i <= j; ++i) s(i, j) -= correction(i, j);
  return symmetric_from_upper(s);
}

MatrixXd ScatterAccumulator::between_factor() const {
  const RowMatrixXd centered = centered_means();
  MatrixXd factor(d_, c_);
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
  s.counts = counts_;
  s.shifts = shifts_;
  s.sums = sums_;
  s.m2 = symmetric_from_upper(m2_);
  return s;
}

ScatterAccumulator ScatterAccumulator::from_state(const AccumulatorState& s) {
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
  ScatterAccumulator acc(d, c);
  acc.n_rows_ = s.n_rows;
  acc.counts_ = s.counts;
  acc.shifts_ = s.shifts;
  acc.sums_ = s.sums;
  acc.m2_ = s.m2;
  return acc;
}

}  // namespace lrf
