// The update path of ScatterAccumulator: passes, the centring of rows and the worker pool
// that turns blocks of rows into moments (the O(n d^2) part).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>

#include "labelranker/accumulator.hpp"
#include "labelranker/blas.hpp"
#include "labelranker/errors.hpp"
#include "labelranker/memory.hpp"
#include "labelranker/workers.hpp"

namespace lrf {
namespace {

// upper(dst) = [upper(base) +] upper(src) * 2^(2 e): a block moment computed from rows
// scaled by 2^-e (base == nullptr: assigned; base may be dst). The factor is applied as
// two exact multiplications by 2^e (2^(2e) itself may not be representable); with e = 0
// this is the plain sum (or copy), bit for bit.
template <class T>
void fold_upper_scaled(double* dst, const double* base, const T* src, Index n, int e) {
  const double g = std::ldexp(1.0, e);
  for (Index j = 0; j < n; ++j) {
    double* d = dst + j * n;
    const T* __restrict__ s = src + j * n;
    if (base == nullptr) {
      for (Index i = 0; i <= j; ++i) d[i] = (static_cast<double>(s[i]) * g) * g;
    } else {
      const double* b = base + j * n;
      for (Index i = 0; i <= j; ++i) d[i] = b[i] + (static_cast<double>(s[i]) * g) * g;
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

// Calls the interrupt poll on the calling thread at most once per kPollInterval.
class Poller {
 public:
  explicit Poller(const InterruptPoll& poll) : poll_(poll), next_(Clock::now() + kInterval) {}
  void check() {
    if (!poll_) return;
    const auto now = Clock::now();
    if (now < next_) return;
    next_ = now + kInterval;
    if (poll_()) throw Interrupted();
  }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kInterval = ScatterAccumulator::kPollInterval;
  const InterruptPoll& poll_;
  Clock::time_point next_;
};

}  // namespace

void ScatterAccumulator::update(const float* x, Index n, const std::int64_t* y, const double* w,
                                const InterruptPoll& poll) {
  update_impl(x, n, y, w, poll);
}

void ScatterAccumulator::update(const double* x, Index n, const std::int64_t* y, const double* w,
                                const InterruptPoll& poll) {
  update_impl(x, n, y, w, poll);
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
  void clear() {  // after a failure: no partial block left behind
    sums.setZero();
    counts.setZero();
    std::fill(touched.begin(), touched.end(), 0);
    classes.clear();
  }
};

template <class T>
void ScatterAccumulator::update_impl(const T* x, Index n, const std::int64_t* y, const double* w,
                                     const InterruptPoll& poll) {
  if (n < 0) throw InputError("negative number of rows");
  if (n == 0) return;
  const bool own_pass = !work_.open;
  if (own_pass) {
    validate_rows(n, y, w);  // before the pass opens: nothing to undo
    begin_pass();
  }
  const std::size_t classes_before = work_.classes.size();
  const bool saw_double_before = work_.saw_double;
  // Inside a caller's pass an interrupt undoes this call only, which costs a saved copy of
  // what it changes; in a pass of its own, dropping the pass is the undo.
  const bool undoable = !own_pass && static_cast<bool>(poll);
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
    add_rows(x, n, y, w, poll, undoable);
  } catch (const Interrupted&) {
    if (undoable) undo_call(classes_before, saw_double_before);
    else abort_pass();
    throw;
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
void ScatterAccumulator::add_rows(const T* x, Index n, const std::int64_t* y, const double* w,
                                  const InterruptPoll& poll, bool undoable) {
  // The rows' statistics go to the workspace and reach the accumulator only when the pass
  // commits, so an invalid row leaves the accumulator as it was.
  Workspace& ws = work_;
  if constexpr (std::is_same_v<T, float>) {
    if (ws.shifts_f.rows() != c_) allocate(ws.shifts_f, c_, d_, "the pass's float32 class shifts");
  }

  // Shifts are fixed once per pass, when a class first appears in it: the accumulator's
  // shift, or for a class without one the mean of its first kShiftRows rows in this call;
  // rounded to input precision (so x - s is exact near s).
  std::vector<Index> fresh;  // classes whose shift is set in this call
  std::vector<Index> taken;  // rows averaged, if fresh
  allocate_vector(taken, c_, "the call's class row counts", Index{-1});
  allocating<std::int64_t>(c_, -1, "the call's class list", [&] { fresh.reserve(c_); });
  {
    Index fresh_open = 0;
    for (Index i = 0; i < n; ++i) {
      const Index k = y[i];
      if (!ws.touched[k]) {
        ws.touched[k] = 1;
        ws.classes.push_back(k);  // never reallocates: capacity C since begin_pass
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
    const Index block_rows = std::min(n, sub_rows);
    if (lane.rows<T>().size() < static_cast<std::size_t>(block_rows * d_)) {
      allocating<T>(block_rows, d_, "a worker's centred rows",
                    [&] { lane.rows<T>().resize(static_cast<std::size_t>(block_rows * d_)); });
    }
    if (lane.moment<T>().size() != static_cast<std::size_t>(d_ * d_)) {
      allocating<T>(d_, d_, "a worker's block moment",
                    [&] { lane.moment<T>().resize(static_cast<std::size_t>(d_ * d_)); });
    }
    if (lane.counts.size() != c_) {
      allocate_zero(lane.counts, c_, 1, "a worker's class counts");
      allocate_zero(lane.sums, c_, d_, "a worker's class sums");
      allocate_vector(lane.touched, c_, "a worker's class flags", char{0});
      allocating<std::int64_t>(c_, -1, "a worker's class list", [&] { lane.classes.reserve(c_); });
    }
  }
  if (undoable && ws.saved_rows.capacity() < static_cast<std::size_t>(c_ * (d_ + 1))) {
    allocating<double>(c_, d_ + 1, "the class sums an update may have to restore", [&] {
      ws.saved_rows.reserve(static_cast<std::size_t>(c_ * (d_ + 1)));
      ws.saved_classes.reserve(static_cast<std::size_t>(c_));
    });
  }
  // An undoable call builds its moment in `spare` while the pass's moment stays as it was.
  const bool to_spare = undoable && ws.has_moment;
  if (to_spare && ws.spare.rows() != d_) {
    allocate(ws.spare, d_, d_, "the pass's second moment while an update may be undone");
  }

  Poller poller(poll);
  std::atomic<bool> stop{false};  // a worker failed or the call was interrupted
  // Returns false if the block was abandoned (stop); polls on the calling thread.
  auto process_block = [&](Lane& lane, Index b, bool caller) {
    const Index start = b * kBlockRows;
    const Index rows = std::min(kBlockRows, n - start);
    T* zb = lane.rows<T>().data();
    lane.classes.clear();
    lane.weight_exp = block_weight_exponent(w == nullptr ? nullptr : w + start, rows);
    const double scale = std::ldexp(1.0, -lane.weight_exp);
    for (Index sub = 0; sub < rows; sub += sub_rows) {
      if (caller) poller.check();
      if (stop.load(std::memory_order_relaxed)) return false;
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
    return true;
  };

  auto reduce_block = [&](Lane& lane, Index b) {
    double* dst = to_spare ? ws.spare.data() : ws.moment.data();
    const double* base = b > 0 ? dst : to_spare ? ws.moment.data() : ws.has_moment ? dst : nullptr;
    fold_upper_scaled(dst, base, lane.moment<T>().data(), d_, lane.weight_exp);
    for (Index k : lane.classes) {
      if (undoable && !ws.saved[k]) {  // keep what this call changes, to undo it
        ws.saved[k] = 1;
        ws.saved_classes.push_back(k);
        ws.saved_rows.insert(ws.saved_rows.end(), ws.sums.row(k).data(), ws.sums.row(k).data() + d_);
        ws.saved_rows.push_back(ws.counts[k]);
      }
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
    try {
      for (Index b = 0; b < n_blocks; ++b) {
        process_block(*ws.lanes[0], b, true);
        reduce_block(*ws.lanes[0], b);
      }
    } catch (...) {
      ws.lanes[0]->clear();
      throw;
    }
  } else {
    blas::ThreadScope serial_blas(1);  // our workers each run the BLAS on one thread
    std::atomic<Index> next{0};
    std::mutex mutex;
    std::condition_variable turn;
    Index reduced = 0;  // blocks reduced so far (guarded by mutex)
    bool failed = false;
    std::exception_ptr error;
    // Blocks are claimed in order, whichever threads run: fewer threads (some could not be
    // started) process the same blocks and reduce them in the same order.
    auto work = [&](int l) {
      Lane& lane = *ws.lanes[l];
      try {
        for (Index b = next++; b < n_blocks; b = next++) {
          if (!process_block(lane, b, l == 0)) return;
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
        stop = true;
        turn.notify_all();
      }
    };
    run_on_threads(static_cast<int>(lanes), work);
    if (error) {
      for (auto& lane : ws.lanes) lane->clear();
      std::rethrow_exception(error);
    }
  }

  // A non-finite feature (or shift) makes a centred value non-finite and with it the
  // moment's diagonal; so does a square that overflows. O(d) to check per call.
  if (to_spare) ws.moment.swap(ws.spare);
  ws.clear_saved();
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

}  // namespace lrf
