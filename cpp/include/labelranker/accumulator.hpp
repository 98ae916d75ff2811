// Streaming accumulator of the statistics LDA needs: per-class weighted counts and sums and
// the pooled within-class second moment, all in float64, mergeable.
//
// Numerics: every row is shifted by a per-class shift s_k (the mean of the class's rows in
// the first block it appeared in, rounded to the input precision) before its outer product
// is formed, so features with a large mean and small spread do not cancel. We keep
//   counts  n_k = sum_i w_i                              (C)
//   sums    T_k = sum_i w_i (x_i - s_k)                 (C x d)
//   m2      M   = sum_i w_i (x_i - s_{y_i})(x_i - s_{y_i})^T   (d x d, upper triangle)
// and recover S_w = M - sum_k T_k T_k^T / n_k, where T_k / n_k is small by construction.
// Merging re-expresses one side's moments around the other side's shifts (exact algebra).
//
// The O(n d^2) part is one BLAS syrk per block of rows. float32 input is multiplied in
// float32 within a block of at most kBlockRows rows and added to the float64 moment. The
// O(n d) class sums of single-label rows are taken class by class (class_blocks.cpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "labelranker/blas.hpp"
#include "labelranker/types.hpp"
#include "labelranker/workers.hpp"

namespace lrf {
namespace detail {
class Poller;
template <class T>
struct Rows;
}  // namespace detail

// Asked by update() on its calling thread between blocks of rows, at most once per
// kPollInterval; returning true stops the update, which then leaves no trace and throws
// Interrupted. The bindings poll Python's signal handlers (Ctrl-C) this way.
using InterruptPoll = std::function<bool()>;

// The rows of one update() call, beside the feature matrix x (x_rows rows of d):
// row i is x's row index[i] (or its row i without an index), of class y[i] with weight w[i]
// (nullptr: 1) or, with label weights instead of y (and w), of the classes
// cols[indptr[i] .. indptr[i+1]) with the non-negative weights vals[...]. A row with several
// weighted classes enters as the (row, class) pairs of weighted LDA (DESIGN.md section 7),
// without forming them: its moment is taken around the weighted mean of its classes'
// shifts, and a per-class correction is kept until the pass commits.
struct RowSet {
  Index n = 0;                           // rows
  Index x_rows = 0;                      // rows of x
  const std::int64_t* index = nullptr;   // (n) rows of x, or nullptr
  const std::int64_t* y = nullptr;       // (n) class indices, or nullptr with indptr
  const double* w = nullptr;             // (n) weights, or nullptr
  const std::int64_t* indptr = nullptr;  // (n + 1) label-weight rows (CSR), or nullptr
  const std::int64_t* cols = nullptr;    // (indptr[n]) their classes
  const double* vals = nullptr;          // (indptr[n]) their weights
  bool has_labels() const { return indptr != nullptr; }
  std::int64_t x_row(Index i) const { return index == nullptr ? i : index[i]; }
};

// Everything an accumulator holds, as plain arrays (for export, import and pickling).
struct AccumulatorState {
  Index n_features = 0;
  Index num_classes = 0;
  std::int64_t n_samples = 0;  // rows seen, whatever their weight (file key "n_rows")
  VectorXd class_counts;       // (C) weighted counts (file key "counts")
  RowMatrixXd shifts;          // (C x d) per-class shifts; meaningful where counts > 0
  RowMatrixXd sums;            // (C x d) weighted sums of shifted rows
  MatrixXd m2;                 // (d x d) symmetric pooled shifted second moment
};

class ScatterAccumulator {
 public:
  // Rows per BLAS call; also bounds the float32 partial sums. Blocks are fixed by position,
  // so results do not depend on the number of threads.
  static constexpr Index kBlockRows = 4096;
  // A class's shift is the mean of its first rows (at most this many) in the call where it
  // first appears.
  static constexpr Index kShiftRows = 32;

  ScatterAccumulator(Index n_features, Index num_classes);

  Index n_features() const { return d_; }
  Index num_classes() const { return c_; }
  std::int64_t n_samples() const { return n_samples_; }
  const VectorXd& class_counts() const { return class_counts_; }
  double total_weight() const { return class_counts_.sum(); }

  // Adds n rows of x (row-major n x d), with class indices y in [0, C) and optional
  // non-negative weights (nullptr: all ones). Either every row is added or, if any input
  // is invalid (label out of range, non-finite feature or weight, negative weight), none
  // is and InputError is thrown. If `poll` (optional) returns true, the update stops and
  // throws Interrupted with the accumulator as before the call; inside an open pass only
  // this call is undone (the pass's earlier calls stay in it), as if it had not been made.
  void update(const float* x, Index n, const std::int64_t* y, const double* w,
              const InterruptPoll& poll = {});
  void update(const double* x, Index n, const std::int64_t* y, const double* w,
              const InterruptPoll& poll = {});
  // The same for the rows described by `rows` (a subset of x's rows, or label weights).
  void update(const float* x, const RowSet& rows, const InterruptPoll& poll = {});
  void update(const double* x, const RowSet& rows, const InterruptPoll& poll = {});
  static constexpr std::chrono::milliseconds kPollInterval{20};

  // A pass groups several update() calls into one: their statistics reach the accumulator
  // together at commit_pass(), and an error in any call drops the whole pass (the
  // accumulator stays as before it). Outside a pass every update() is a pass of its own.
  // Within a pass the per-call cost is O(rows d^2) only (the O(C d + d^2) bookkeeping is
  // paid once, at commit), so streaming many small chunks costs what one big call costs.
  // A pass that has seen float64 rows takes no more float32 rows (pass them as float64).
  void begin_pass();
  void commit_pass();
  void abort_pass();
  bool pass_open() const { return work_.open; }
  // Frees the buffers update() keeps between calls (about 2 C d + d^2 doubles plus, per
  // worker, a d x d moment and, with label weights, tables of at most min(C, 4096) x d
  // doubles; and the last call's rows grouped by class, 8 bytes a row, kept up to a
  // million rows); the next update() allocates them again.
  void release_buffers();

  // Adds other's statistics to this one. Same n_features and num_classes required.
  void merge(const ScatterAccumulator& other);

  // (C x d) class means; rows of classes without weight are NaN.
  RowMatrixXd class_means() const;
  // (d x d) scale * S_w, S_w = sum_k sum_{x in k} w (x - mu_k)(x - mu_k)^T; *finite (when
  // given) says whether every entry is finite. On the team's threads when given, else on
  // n_threads() (the same bits).
  MatrixXd within_scatter(double scale = 1.0, bool* finite = nullptr, Team* team = nullptr) const;
  // (d x C) factor M with S_b = M M^T: columns sqrt(n_k) (mu_k - mu).
  MatrixXd between_factor() const;
  MatrixXd between_factor(const RowMatrixXd& centered) const;  // from centered_means()
  // What the solver and the ranking need of the class means, in two passes over them: the
  // centred means (as centered_means()), the global mean (as global_mean()) and the factor
  // M / sqrt(total); *finite says whether the factor is.
  void solver_inputs(double total, RowMatrixXd* centered, VectorXd* mean, MatrixXd* factor,
                     bool* finite) const;
  // (C x d) mu_k - mu, computed without forming the large means first.
  RowMatrixXd centered_means() const;
  // (d) global mean mu.
  VectorXd global_mean() const;

  // Worker threads for update() (default: all hardware threads). Each runs the BLAS
  // single-threaded on its own blocks; blocks are reduced in order, so every thread count
  // gives bit-identical statistics. Workers that cannot be started (thread limits) are
  // done without: the same blocks run on fewer threads, with the same result.
  int n_threads() const { return n_threads_; }
  void set_n_threads(int n);

  AccumulatorState export_state() const;
  // Validates the state and takes its arrays over (no copy).
  static ScatterAccumulator from_state(AccumulatorState state);

  // Throws SingularError naming the classes that have no weight.
  void require_all_classes() const;

 private:
  struct Unallocated {};
  ScatterAccumulator(Unallocated, Index n_features, Index num_classes);
  template <class T>
  void update_impl(const T* x, const RowSet& rows, const InterruptPoll& poll);
  // The rows' path (accumulate.cpp): add_rows runs the steps below.
  template <class T>
  void add_rows(const T* x, const RowSet& rows, const InterruptPoll& poll, bool undoable);
  // Sets the shifts of the classes first seen in this pass; returns the pass's shifts
  // (C x d, values at input precision).
  template <class T>
  const double* assign_shifts(const T* x, const RowSet& rows);
  struct Lane;  // one worker thread's buffers (defined in lane.hpp)
  // Single-label rows go class by class (class_blocks.cpp): the call's rows grouped by
  // class (a stable counting sort of y), cut into blocks of kBlockRows in that order.
  struct ClassRows {
    std::vector<Index> slot;         // (C) -1 between calls
    std::vector<Index> classes;      // the call's classes in order of first appearance
    std::vector<Index> start;        // (classes + 1) class j's rows: rows[start[j], start[j+1])
    std::vector<Index> rows;         // (n) the call's row positions, by class, ascending
    std::vector<char> fresh;         // (classes) new to the pass: 1 with a shift, 2 without
    std::vector<Index> block_first;  // (blocks) the class at each block's first row
    // Classes spanning blocks: their shifts, set before the blocks are centred (row
    // span[j] for the call's class j, or -1).
    std::vector<Index> span;
    RowMatrixXd span_shifts;
    void group(const std::int64_t* y, Index n, Index num_classes);
  };
  // Groups the call's rows, marks the classes new to the pass, finds the shifts of those
  // that span blocks (the others' are set as their block is centred) and saves what an
  // undoable call changes.
  template <class T>
  void prepare_class_blocks(const T* x, const RowSet& rows, bool undoable);
  // Writes the shift of the call's class j to s, where the class is new to the pass (s
  // holds it otherwise).
  template <class T>
  void set_class_shift(const T* x, const RowSet& rows, Index j, double* s);
  // Centres block b of the class-grouped rows and takes its moment into `lane` (as
  // Lane::center_block does for label weights); writes the sums of the classes inside the
  // block and keeps those of the classes spanning it for reduce_block.
  template <class T>
  bool center_class_block(Lane& lane, const detail::Rows<T>& in, Index b, detail::Poller* poller,
                          const std::atomic<bool>& stop);
  // Sizes the first `lanes` workers' buffers (and the undo buffers) for this call.
  template <class T>
  void prepare_lanes(const RowSet& rows, Index lanes, Index sub_rows, bool undoable, bool to_spare);
  // Adds a lane's block b to the pass (to `spare` if to_spare), saving what an undoable
  // call changes first.
  template <class T>
  void reduce_block(Lane& lane, Index b, bool to_spare, bool undoable);
  // Undoes the workspace changes of an interrupted call inside an open pass.
  void undo_call(std::size_t classes_before, bool saw_double_before);
  void validate_rows(const RowSet& rows) const;
  template <class T>
  [[noreturn]] void throw_non_finite(const T* x, const RowSet& rows) const;
  // Adds the label-weight rows' correction sum_k (s_k - s_ref) U_k^T to the pass's moment.
  void add_label_correction();
  // Adds statistics taken around `shifts` (only the listed classes) to this accumulator,
  // re-expressing them around this accumulator's own shifts where the two differ.
  void absorb(const std::vector<Index>& classes, const VectorXd& class_counts,
              const RowMatrixXd& shifts, const RowMatrixXd& sums, const MatrixXd& m2_upper,
              std::int64_t n_samples);
  // commit_pass's absorb for an accumulator without statistics (and tables): takes the
  // pass's tables over.
  void adopt_pass(const MatrixXd& moment_upper);
  // Class means minus the shift of the first class with weight (`reference`), which keeps
  // differences of means free of cancellation; *mean (when given) is their weighted mean,
  // sum_k n_k rel_k / N over the classes with weight, taken in the same pass.
  RowMatrixXd relative_means(RowVectorXd* reference, RowVectorXd* mean = nullptr) const;

  Index d_, c_;
  int n_threads_;
  std::int64_t n_samples_ = 0;
  VectorXd class_counts_;
  RowMatrixXd shifts_;  // (C x d), or 0 x d before the first statistics (all zeros)
  RowMatrixXd sums_;    // likewise
  MatrixXd m2_;         // upper triangle is authoritative

  // Buffers reused across update() calls; not part of the state, and a copy of the
  // accumulator starts with empty ones.
  struct Workspace {
    Workspace() = default;
    Workspace(const Workspace&) {}
    Workspace& operator=(const Workspace&) { return *this; }
    MatrixXd moment;  // d x d moment of this pass (upper triangle)
    // (C x d) this pass's shifts and shifted sums; a row is meaningful only for a class
    // seen in the pass (touched)
    RowMatrixXd shifts, sums;
    // (C x d) U_k = sum_i W_ik (s_k - a_i) over label-weight rows (a_i: the weighted mean
    // of row i's shifts); allocated by the first such call, used while has_labels.
    RowMatrixXd corrections;
    bool has_labels = false;
    VectorXd class_counts;       // (C) this pass's weights
    std::vector<char> touched;   // (C) class seen in this pass
    std::vector<Index> classes;  // classes seen in this pass, in order of appearance
    bool open = false;           // a pass is open (a copy starts with none)
    std::int64_t n_samples = 0;  // rows added in this pass
    bool has_moment = false;     // moment holds data (else it is assigned, not added)
    bool saw_double = false;     // a float64 call was part of this pass
    std::unique_ptr<blas::ThreadScope> serial_blas;  // held while a pass is open
    // While an update inside an open pass may still be undone: its blocks go to `spare`
    // (the first as moment + block), which replaces `moment` when the call succeeds, and
    // the first change of each class's sums and count in the call is saved first.
    MatrixXd spare;
    std::vector<char> saved;  // (C) class saved in this call
    std::vector<Index> saved_classes;
    std::vector<double> saved_rows;     // per saved class: its sums, count [, corrections]
    void save_class(Index k, Index d);  // saves class k's rows, once per call
    void clear_saved();
    void release();  // frees every buffer (no pass open)
    std::vector<std::shared_ptr<Lane>> lanes;
    ClassRows by_class;
  };
  Workspace work_;
};

}  // namespace lrf
