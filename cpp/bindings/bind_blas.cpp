// Control of the BLAS thread pool the engine runs on.
#include "bindings.hpp"
#include "labelranker/blas.hpp"

namespace py = pybind11;

void lrf::bindings::bind_blas(py::module_& m) {
  m.def("blas_n_threads", &lrf::blas::n_threads,
        "Number of threads of the engine's OpenBLAS pool.");
  m.def(
      "set_blas_n_threads",
      [](int n) {
        if (n < 1) throw py::value_error("n_threads must be >= 1, got " + std::to_string(n));
        lrf::blas::set_size_outside_scopes(n);
      },
      py::arg("n"),
      "Sets the number of threads of the engine's OpenBLAS pool (while a solve or a pass "
      "holds the pool at one thread, from when it ends).");
}
