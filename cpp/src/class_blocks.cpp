// Single-label rows, class by class. The call's rows are grouped by class (a stable
// counting sort of y) and cut into blocks of kBlockRows in that order. A lane centres a
// block's rows class after class, so that the class's shift and running sum stay in L1
// cache while its rows stream past, and takes the block's moment by syrk as for any rows.
// Each class's shift is then read, and its sums row written, once per call however many
// classes there are. Taken in row order instead, every row reads a d-wide shift row and
// adds into a d-wide table row, which at tens of thousands of classes costs more than the
// block's syrk.
//
// Summation order, which depends on the call's rows but not on the thread count: the
// moment adds the blocks of the class-grouped order in block order; class k's sums add
// its rows one by one in the order given, into what the pass held before the call, a
// class that spans several blocks by one partial sum per block, added in block order.
#include <algorithm>
#include <cmath>

#include "kernels.hpp"
#include "labelranker/accumulator.hpp"
#include "labelranker/blas.hpp"
#include "labelranker/memory.hpp"
#include "lane.hpp"

namespace lrf {
namespace {

// Rows asked for ahead of the one read (prefetch_row). At two, with about ten rows per
// class (20,000 classes in 200,000 rows) a pass spent a tenth of its time waiting for rows.
constexpr Index kAhead = 4;

// Asks for the cache lines of a row the lane will read next: the rows are gathered, so the
// hardware prefetcher cannot see them coming.
template <class T>
void prefetch_row(const T* row, Index d) {
  const char* p = reinterpret_cast<const char*>(row);
  for (Index b = 0; b < d * Index(sizeof(T)); b += 64) __builtin_prefetch(p + b);
}

}  // namespace

void ScatterAccumulator::ClassRows::group(const std::int64_t* y, Index n, Index num_classes) {
  if (static_cast<Index>(slot.size()) != num_classes) {
    allocate_vector(slot, num_classes, "the call's class slots", Index{-1});
  }
  const Index most = std::min(n, num_classes);
  allocating<std::int64_t>(n, -1, "the call's rows grouped by class", [&] {
    classes.clear();
    start.clear();
    classes.reserve(static_cast<std::size_t>(most));
    start.reserve(static_cast<std::size_t>(most + 1));
    rows.resize(static_cast<std::size_t>(n));
  });
  for (Index i = 0; i < n; ++i) {  // rows per class
    Index& s = slot[y[i]];
    if (s < 0) {
      s = static_cast<Index>(classes.size());
      classes.push_back(y[i]);
      start.push_back(0);
    }
    ++start[s];
  }
  Index offset = 0;  // exclusive prefix sums: where each class's rows begin
  for (Index& s : start) {
    const Index count = s;
    s = offset;
    offset += count;
  }
  start.push_back(n);
  for (Index i = 0; i < n; ++i) rows[start[slot[y[i]]]++] = i;
  // The fill advanced start[j] to start[j + 1]: shift back, and clear the slots.
  for (std::size_t j = classes.size(); j-- > 0;) {
    start[j + 1] = start[j];
    slot[classes[j]] = -1;
  }
  start[0] = 0;
}

void ScatterAccumulator::Workspace::save_class(Index k, Index d) {
  // Class k's pass sums and count (and label-weight corrections, if the pass has them) as
  // before this call, kept once per call for undo_call.
  if (saved[k]) return;
  saved[k] = 1;
  saved_classes.push_back(k);
  saved_rows.insert(saved_rows.end(), sums.row(k).data(), sums.row(k).data() + d);
  saved_rows.push_back(class_counts[k]);
  if (corrections.rows() == sums.rows()) {
    const double* u = corrections.row(k).data();
    saved_rows.insert(saved_rows.end(), u, u + d);
  }
}

template <class T>
void ScatterAccumulator::set_class_shift(const T* x, const RowSet& set, Index j, double* s) {
  // A class new to the pass takes the accumulator's shift, or the mean of its first
  // kShiftRows rows in this call rounded to input precision (so x - s is exact near s).
  const ClassRows& by = work_.by_class;
  const Index k = by.classes[j];
  if (by.fresh[j] == 1) {
    std::copy(shifts_.row(k).data(), shifts_.row(k).data() + d_, s);
  } else if (by.fresh[j] == 2) {
    const Index* rows = by.rows.data() + by.start[j];
    const Index taken = std::min(by.start[j + 1] - by.start[j], kShiftRows);
    // Rows ahead are asked for across the class's end: with few rows per class the next
    // class's first rows would otherwise arrive from memory only when its shift needs them.
    const Index ahead = set.n - by.start[j];
    std::fill(s, s + d_, 0.0);
    for (Index q = 0; q < taken; ++q) {
      if (q + kAhead < ahead) prefetch_row(x + set.x_row(rows[q + kAhead]) * d_, d_);
      kernels::add_row(x + set.x_row(rows[q]) * d_, s, d_);
    }
    for (Index c = 0; c < d_; ++c) s[c] = kernels::round_to<T>(s[c] / static_cast<double>(taken));
  }
}

template <class T>
void ScatterAccumulator::prepare_class_blocks(const T* x, const RowSet& set, bool undoable) {
  Workspace& ws = work_;
  ClassRows& by = ws.by_class;
  by.group(set.y, set.n, c_);
  const Index L = static_cast<Index>(by.classes.size());
  const Index n_blocks = (set.n + kBlockRows - 1) / kBlockRows;
  allocating<std::int64_t>(2 * L + n_blocks, -1, "the call's class flags", [&] {
    by.fresh.assign(static_cast<std::size_t>(L), 0);
    by.span.assign(static_cast<std::size_t>(L), -1);
    by.block_first.resize(static_cast<std::size_t>(n_blocks));
  });
  for (Index b = 0, j = 0; b < n_blocks; ++b) {
    while (by.start[j + 1] <= b * kBlockRows) ++j;
    by.block_first[b] = j;
  }
  Index spanning = 0;
  for (Index j = 0; j < L; ++j) {
    const Index k = by.classes[j];
    if (by.start[j] / kBlockRows != (by.start[j + 1] - 1) / kBlockRows) by.span[j] = spanning++;
    if (ws.touched[k]) {  // its sums go on from the pass's
      if (undoable) ws.save_class(k, d_);
      continue;
    }
    ws.touched[k] = 1;
    ws.classes.push_back(k);  // never reallocates: capacity C since begin_pass
    by.fresh[j] = class_counts_[k] > 0 ? 1 : 2;
  }
  // The shifts of spanning classes (at most one per block) go to a small table that every
  // block reads; the C x d table's row is written by the class's first block, on a worker
  // (its first touch of a fresh page costs a 2 MiB zeroing).
  if (by.span_shifts.rows() < spanning || by.span_shifts.cols() != d_)
    allocate(by.span_shifts, spanning, d_, "the spanning classes' shifts");
  for (Index j = 0; j < L; ++j) {
    if (by.span[j] < 0) continue;
    double* s = by.span_shifts.row(by.span[j]).data();
    if (by.fresh[j] == 0)
      std::copy(ws.shifts.row(by.classes[j]).data(), ws.shifts.row(by.classes[j]).data() + d_, s);
    else set_class_shift(x, set, j, s);
  }
}

template <class T>
bool ScatterAccumulator::center_class_block(Lane& lane, const Rows<T>& in, Index b, Poller* poller,
                                            const std::atomic<bool>& stop) {
  Workspace& ws = work_;
  const ClassRows& by = ws.by_class;
  const RowSet& set = in.set;
  const Index n = set.n;
  const Index p0 = b * kBlockRows;
  const Index p1 = std::min(n, p0 + kBlockRows);
  // Once per block at least: with few features a block's rows fit one sub-block, and the
  // check between sub-blocks below is never reached (Ctrl-C would go unseen all call).
  if (poller != nullptr) poller->check();
  if (stop.load(std::memory_order_relaxed)) return false;
  double wmax = 0.0;
  if (set.w != nullptr)
    for (Index p = p0; p < p1; ++p) wmax = std::max(wmax, set.w[by.rows[p]]);
  lane.weight_exp = kernels::block_weight_exponent(set.w == nullptr ? nullptr : &wmax, 1);
  const double scale = std::ldexp(1.0, -lane.weight_exp);
  T* zb = lane.centred<T>().data();
  Index filled = 0;  // rows in zb
  bool first = true;
  auto flush = [&] {
    blas::syrk_upper(d_, filled, zb, d_, first ? T(0) : T(1), lane.moment<T>().data(), d_);
    first = false;
    filled = 0;
  };
  lane.carries = 0;
  for (Index j = by.block_first[b]; j < static_cast<Index>(by.classes.size()) && by.start[j] < p1;
       ++j) {
    const Index k = by.classes[j];
    const bool spans = by.span[j] >= 0;
    double* row_shift = ws.shifts.row(k).data();
    const double* s = spans ? by.span_shifts.row(by.span[j]).data() : row_shift;
    if (by.fresh[j] != 0 && by.start[j] >= p0) {  // new to the pass, first rows in this block
      if (spans) std::copy(s, s + d_, row_shift);
      else set_class_shift(in.x, set, j, row_shift);
    }
    double* sum = spans ? lane.carry_sums.data() + lane.carries * d_ : lane.class_sum.data();
    double count = 0.0;
    if (!spans && by.fresh[j] == 0) {
      std::copy(ws.sums.row(k).data(), ws.sums.row(k).data() + d_, sum);
      count = ws.class_counts[k];
    } else {
      std::fill(sum, sum + d_, 0.0);
    }
    const Index q1 = std::min(by.start[j + 1], p1);
    for (Index p = std::max(by.start[j], p0); p < q1; ++p) {
      if (filled == in.sub_rows) {
        if (poller != nullptr) poller->check();
        if (stop.load(std::memory_order_relaxed)) return false;
        flush();
      }
      if (p + kAhead < n) prefetch_row(in.row(by.rows[p + kAhead]), d_);
      const Index i = by.rows[p];
      const double* w = set.w == nullptr ? nullptr : set.w + i;
      kernels::center_row(in.row(i), s, zb + filled * d_, sum, d_, w, scale);
      count += w == nullptr ? 1.0 : *w;
      ++filled;
    }
    if (spans) {
      lane.carry_classes[lane.carries] = j;
      lane.carry_counts[lane.carries++] = count;
    } else {
      std::copy(sum, sum + d_, ws.sums.row(k).data());
      ws.class_counts[k] = count;
      lane.overflow = lane.overflow || !std::isfinite(count) ||
                      !Eigen::Map<const RowVectorXd>(sum, d_).allFinite();
    }
  }
  flush();  // a block has at least one row
  return true;
}

#define LRF_CLASS_BLOCKS(T)                                                                   \
  template void ScatterAccumulator::prepare_class_blocks(const T*, const RowSet&, bool);      \
  template bool ScatterAccumulator::center_class_block(Lane&, const Rows<T>&, Index, Poller*, \
                                                       const std::atomic<bool>&);
LRF_CLASS_BLOCKS(float)
LRF_CLASS_BLOCKS(double)
#undef LRF_CLASS_BLOCKS

}  // namespace lrf
