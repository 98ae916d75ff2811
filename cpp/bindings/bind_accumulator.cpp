// Binds the accumulator, the solver and the ranking as one class, `Accumulator`.
//
// Inputs cross without copies: X must be a C-contiguous, aligned float32 or float64 matrix,
// y a contiguous, aligned int64 vector, weights a contiguous, aligned float64 vector (the
// Python layer converts anything else once). Arrays are checked and their pointers taken
// with the GIL held; the work then runs with the GIL released and the accumulator's own
// lock held. The lock is only ever taken with the GIL released: an update on the main
// thread takes the GIL back briefly to look for Ctrl-C while it holds the lock.
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>
#include <optional>
#include <string>

#include "bindings.hpp"
#include "labelranker/accumulator.hpp"
#include "labelranker/errors.hpp"
#include "labelranker/memory.hpp"
#include "labelranker/pipeline.hpp"
#include "labelranker/workers.hpp"

namespace py = pybind11;
using lrf::Index;

namespace {

struct BoundAccumulator {
  lrf::ScatterAccumulator acc;
  mutable std::mutex mutex;

  BoundAccumulator(Index d, Index c) : acc(d, c) {}
  explicit BoundAccumulator(lrf::ScatterAccumulator a) : acc(std::move(a)) {}
};

// C-contiguous and aligned for its dtype: the engine reads the buffer through typed
// pointers, so a misaligned buffer (np.frombuffer at an odd offset) is refused.
bool contiguous_and_aligned(const py::array& a) {
  constexpr int kAligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  return (a.flags() & py::array::c_style) != 0 && (a.flags() & kAligned) != 0;
}

template <class T>
const T* vector_data(const py::array& a, Index n, const char* name, const char* dtype,
                     const std::string& expected = "X has") {
  if (!a.dtype().equal(py::dtype::of<T>()) || !contiguous_and_aligned(a) || a.ndim() != 1) {
    throw py::type_error(std::string(name) + " must be a contiguous, aligned 1-D " + dtype +
                         " array");
  }
  if (a.shape(0) != n) {
    throw py::value_error(std::string(name) + " has " + std::to_string(a.shape(0)) +
                          " entries but " + expected + " " + std::to_string(n) +
                          (expected == "X has" ? " rows" : ""));
  }
  return static_cast<const T*>(a.data());
}

// Python runs signal handlers on the main thread only, so only there is polling useful.
unsigned long main_thread_ident = 0;

// X's rows (checked: 2-D, the accumulator's width, float32/float64, contiguous) and
// whether it is float32.
Index checked_x(const BoundAccumulator& self, const py::array& x, bool* single) {
  if (x.ndim() != 2) throw py::value_error("X must be 2-D (n_samples, n_features)");
  if (x.shape(1) != self.acc.n_features()) {
    throw py::value_error("X has " + std::to_string(x.shape(1)) +
                          " features but the accumulator has " +
                          std::to_string(self.acc.n_features()));
  }
  if (!contiguous_and_aligned(x)) throw py::type_error("X must be C-contiguous and aligned");
  *single = x.dtype().equal(py::dtype::of<float>());
  if (!*single && !x.dtype().equal(py::dtype::of<double>())) {
    throw py::type_error("X must be float32 or float64");
  }
  return x.shape(0);
}

// Runs the update of `rows` of x with the GIL released.
void run_update(BoundAccumulator& self, const py::array& x, bool single, const lrf::RowSet& rows) {
  const void* data = x.data();
  // Ctrl-C (or any signal handler that raises) stops the update between blocks; the
  // engine undoes it, and the handler's exception (KeyboardInterrupt) is raised here.
  std::optional<py::error_already_set> raised;
  lrf::InterruptPoll poll;
  if (PyThread_get_thread_ident() == main_thread_ident) {
    poll = [&raised] {
      py::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() == 0) return false;
      raised.emplace();  // takes the exception the handler raised
      return true;
    };
  }
  bool interrupted = false;
  {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(self.mutex);
    try {
      if (single) {
        self.acc.update(static_cast<const float*>(data), rows, poll);
      } else {
        self.acc.update(static_cast<const double*>(data), rows, poll);
      }
    } catch (const lrf::Interrupted&) {
      interrupted = true;
    }
  }
  if (interrupted) {
    if (raised) throw std::move(*raised);
    throw std::runtime_error("update interrupted");  // not reached: only our poll stops it
  }
}

void update(BoundAccumulator& self, const py::array& x, const py::array& y,
            const std::optional<py::array>& w) {
  bool single = false;
  const Index n = checked_x(self, x, &single);
  lrf::RowSet rows{n, n};
  rows.y = vector_data<std::int64_t>(y, n, "y", "int64");
  rows.w = w ? vector_data<double>(*w, n, "sample_weight", "float64") : nullptr;
  run_update(self, x, single, rows);
}

// Rows index[i] of X, with their classes y[i] and weights w[i] (the rows of one fold).
void update_rows(BoundAccumulator& self, const py::array& x, const py::array& index,
                 const py::array& y, const std::optional<py::array>& w) {
  bool single = false;
  lrf::RowSet rows;
  rows.x_rows = checked_x(self, x, &single);
  rows.n = index.ndim() == 1 ? index.shape(0) : 0;
  rows.index = vector_data<std::int64_t>(index, rows.n, "index", "int64");
  rows.y = vector_data<std::int64_t>(y, rows.n, "y", "int64", "index has");
  rows.w = w ? vector_data<double>(*w, rows.n, "sample_weight", "float64", "index has") : nullptr;
  run_update(self, x, single, rows);
}

// Rows of X with label weights in CSR form: row i's classes cols[indptr[i]:indptr[i+1]].
void update_labels(BoundAccumulator& self, const py::array& x, const py::array& indptr,
                   const py::array& cols, const py::array& vals) {
  bool single = false;
  const Index n = checked_x(self, x, &single);
  lrf::RowSet rows{n, n};
  rows.indptr = vector_data<std::int64_t>(indptr, n + 1, "indptr", "int64", "X's rows + 1 =");
  const Index nnz = cols.ndim() == 1 ? cols.shape(0) : -1;
  rows.cols = vector_data<std::int64_t>(cols, nnz, "cols", "int64");
  rows.vals = vector_data<double>(vals, nnz, "vals", "float64", "cols has");
  if (rows.indptr[n] != nnz) {
    throw py::value_error("indptr[-1] = " + std::to_string(rows.indptr[n]) + " but cols has " +
                          std::to_string(nnz) + " entries");
  }
  run_update(self, x, single, rows);
}

void merge(BoundAccumulator& self, const BoundAccumulator& other) {
  py::gil_scoped_release nogil;
  if (&self == &other) {
    std::lock_guard<std::mutex> lock(self.mutex);
    self.acc.merge(other.acc);
  } else {
    std::scoped_lock lock(self.mutex, other.mutex);
    self.acc.merge(other.acc);
  }
}

lrf::Shrinkage parse_shrinkage(const std::string& kind, double value) {
  lrf::Shrinkage s;
  if (kind == "none") {
    s.kind = lrf::Shrinkage::Kind::kNone;
  } else if (kind == "fixed") {
    if (!(value >= 0.0 && value <= 1.0)) {
      throw py::value_error("shrinkage must be in [0, 1], got " + std::to_string(value));
    }
    s.kind = lrf::Shrinkage::Kind::kFixed;
    s.value = value;
  } else if (kind == "oas") {
    s.kind = lrf::Shrinkage::Kind::kOas;
  } else {
    throw py::value_error("shrinkage kind must be 'none', 'fixed' or 'oas', got '" + kind + "'");
  }
  return s;
}

py::dict solve(const BoundAccumulator& self, const std::string& kind, double value, Index k) {
  const lrf::Shrinkage shrinkage = parse_shrinkage(kind, value);
  lrf::Solution sol;
  {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(self.mutex);
    sol = lrf::solve_and_rank(self.acc, shrinkage, k);
  }
  py::dict out;
  out["directions"] = sol.discriminant.directions;
  out["eigenvalues"] = sol.discriminant.eigenvalues;
  out["eigenvalue_sum"] = sol.discriminant.eigenvalue_sum;
  out["shrinkage"] = sol.discriminant.shrinkage;
  out["centroids"] = sol.ranking.centroids;
  out["order"] = py::array(py::cast(sol.ranking.order));
  out["positions"] = py::array(py::cast(sol.ranking.positions));
  out["mean"] = sol.mean;
  return out;
}

template <class F>
auto locked(F f) {
  return [f](const BoundAccumulator& self) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(self.mutex);
    return f(self.acc);
  };
}

// The same for a call that changes the accumulator.
template <class F>
auto mutating(F f) {
  return [f](BoundAccumulator& self) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(self.mutex);
    f(self.acc);
  };
}

py::dict get_state(const BoundAccumulator& self) {
  lrf::AccumulatorState s;
  {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(self.mutex);
    s = self.acc.export_state();
  }
  // The keys are the state file format (version 1): "n_rows" and "counts" predate the
  // n_samples and class_counts names and stay, so files written before still load.
  py::dict out;
  out["n_features"] = s.n_features;
  out["num_classes"] = s.num_classes;
  out["n_rows"] = s.n_samples;
  out["counts"] = s.class_counts;
  out["shifts"] = s.shifts;
  out["sums"] = s.sums;
  out["m2"] = s.m2;
  return out;
}

// A state's array as numpy sees it; real numbers only (the Eigen caster would otherwise
// take complex arrays by dropping the imaginary part, and bools or objects as numbers).
py::array real_array(const py::dict& d, const char* key) {
  py::array a = py::array::ensure(d[key]);
  if (!a)
    throw lrf::InputError(std::string("invalid accumulator state: ") + key + " is not an array");
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u') {
    throw lrf::InputError(std::string("invalid accumulator state: ") + key +
                          " must hold real numbers, got dtype " +
                          py::str(a.dtype()).cast<std::string>());
  }
  return a;
}

// A state's array as an Eigen matrix (a copy); running out of memory names its shape.
template <class M>
M state_array(const py::dict& d, const char* key) {
  const py::array a = real_array(d, key);
  const Index rows = a.ndim() >= 1 ? a.shape(0) : 1;
  const Index cols = a.ndim() >= 2 ? a.shape(1) : -1;
  try {
    return a.cast<M>();
  } catch (const std::bad_alloc&) {
    throw lrf::OutOfMemory(rows, cols, sizeof(double), "float64",
                           (std::string("a copy of the state's ") + key).c_str());
  }
}

std::unique_ptr<BoundAccumulator> from_state(const py::dict& d) {
  lrf::AccumulatorState s;
  try {
    s.n_features = d["n_features"].cast<Index>();
    s.num_classes = d["num_classes"].cast<Index>();
    s.n_samples = d["n_rows"].cast<std::int64_t>();
    s.class_counts = state_array<lrf::VectorXd>(d, "counts");
    s.shifts = state_array<lrf::RowMatrixXd>(d, "shifts");
    s.sums = state_array<lrf::RowMatrixXd>(d, "sums");
    s.m2 = state_array<lrf::MatrixXd>(d, "m2");
  } catch (const py::error_already_set& e) {
    throw lrf::InputError(std::string("invalid accumulator state: ") + e.what());
  } catch (const py::cast_error& e) {
    throw lrf::InputError(std::string("invalid accumulator state: ") + e.what());
  }
  return std::make_unique<BoundAccumulator>(lrf::ScatterAccumulator::from_state(std::move(s)));
}

}  // namespace

void lrf::bindings::bind_accumulator(py::module_& m) {
  // Rows one worker thread takes at a time: streamed chunks are best a multiple of it.
  m.attr("BLOCK_ROWS") = lrf::ScatterAccumulator::kBlockRows;
  main_thread_ident =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  m.def("_fail_thread_starts", &lrf::testing::fail_thread_starts, py::arg("k"),
        py::arg("after") = 0,
        "Test hook: after `after` successful worker-thread starts, the engine's next k fail "
        "as under a thread limit (the work then runs on fewer threads). Returns the "
        "refusals still pending before the call.");
  py::class_<BoundAccumulator>(m, "Accumulator", R"doc(
Streaming LDA statistics in float64 (engine object; use labelranker_fast.ScatterAccumulator).
)doc")
      .def(py::init<Index, Index>(), py::arg("n_features"), py::arg("num_classes"),
           "An empty accumulator for n_features >= 1 features and num_classes >= 2 classes.")
      .def("update_rows", &update_rows, py::arg("X"), py::arg("index"), py::arg("y"),
           py::arg("sample_weight") = py::none(),
           "Adds rows X[index] with classes y and weights (like update(X[index], y, w)).")
      .def("update_labels", &update_labels, py::arg("X"), py::arg("indptr"), py::arg("cols"),
           py::arg("vals"), "Adds rows of X with label weights given as CSR (indptr, cols, vals).")
      .def("update", &update, py::arg("X"), py::arg("y"), py::arg("sample_weight") = py::none(),
           "Adds rows X (C-contiguous float32/float64) with int64 class indices y and optional "
           "float64 weights. All or nothing: on error the state is unchanged.")
      .def_property(
          "n_threads", [](const BoundAccumulator& s) { return s.acc.n_threads(); },
          py::cpp_function(
              [](BoundAccumulator& s, int n) {
                py::gil_scoped_release nogil;
                std::lock_guard<std::mutex> lock(s.mutex);
                s.acc.set_n_threads(n);
              },
              py::arg("self"), py::arg("n")),
          "Worker threads of update() and threads of solve(); statistics and solutions "
          "are bit-identical for every count.")
      .def("begin_pass", mutating([](lrf::ScatterAccumulator& a) { a.begin_pass(); }),
           "Opens a pass: the following update() calls are committed together.")
      .def("commit_pass", mutating([](lrf::ScatterAccumulator& a) { a.commit_pass(); }),
           "Adds the open pass's statistics to the accumulator.")
      .def("abort_pass", mutating([](lrf::ScatterAccumulator& a) { a.abort_pass(); }),
           "Drops the open pass's statistics.")
      .def("release_buffers", mutating([](lrf::ScatterAccumulator& a) { a.release_buffers(); }),
           "Frees the buffers update() keeps between calls.")
      .def_property_readonly("pass_open",
                             locked([](const lrf::ScatterAccumulator& a) { return a.pass_open(); }),
                             "Whether a pass is open (begin_pass() without commit or abort).")
      .def("merge", &merge, py::arg("other"), "Adds other's statistics (in place).")
      .def_property_readonly(
          "n_features", [](const BoundAccumulator& s) { return s.acc.n_features(); },
          "Number of features d.")
      .def_property_readonly(
          "num_classes", [](const BoundAccumulator& s) { return s.acc.num_classes(); },
          "Number of classes C.")
      .def_property_readonly("n_samples",
                             locked([](const lrf::ScatterAccumulator& a) { return a.n_samples(); }),
                             "Rows accumulated, whatever their weights.")
      .def_property_readonly("class_counts", locked([](const lrf::ScatterAccumulator& a) {
                               return lrf::VectorXd(a.class_counts());
                             }),
                             "(C,) float64 weighted class counts n_k (a copy).")
      .def("class_means", locked([](const lrf::ScatterAccumulator& a) { return a.class_means(); }),
           "(C, d) float64 class means; rows of classes without weight are NaN.")
      .def("global_mean", locked([](const lrf::ScatterAccumulator& a) { return a.global_mean(); }),
           "(d,) float64 weighted global mean (NaN while empty).")
      .def("within_scatter",
           locked([](const lrf::ScatterAccumulator& a) { return a.within_scatter(); }),
           "(d, d) float64 within-class scatter S_w = sum_k sum_(x in k) w (x - mu_k)(x - mu_k)^T.")
      .def("between_scatter", locked([](const lrf::ScatterAccumulator& a) {
             const lrf::MatrixXd f = a.between_factor();
             return lrf::MatrixXd(f * f.transpose());
           }),
           "(d, d) float64 between-class scatter S_b = sum_k n_k (mu_k - mu)(mu_k - mu)^T.")
      .def("solve", &solve, py::arg("shrinkage_kind"), py::arg("shrinkage_value"),
           py::arg("n_components"),
           "Top n_components discriminant directions and the ranking of the classes. "
           "shrinkage_kind is 'none', 'fixed' (shrinkage_value in [0, 1]) or 'oas'. Returns a "
           "dict: directions (d, k), eigenvalues (k,) descending, eigenvalue_sum, shrinkage "
           "(the intensity used), centroids (C, k), order (C,) int64 position -> class, "
           "positions (C,) int64 class -> position, mean (d,).")
      .def("get_state", &get_state,
           "The whole state as plain arrays: a dict with n_features, num_classes, n_rows "
           "(ints), counts (C,), shifts (C, d), sums (C, d) and m2 (d, d), all float64.")
      .def_static("from_state", &from_state, py::arg("state"),
                  "Rebuilds an accumulator from get_state()'s arrays (validated).");
}
