// labelranker_fast._core: the compiled engine. Private; the public API is Python.
//
// Engine errors (lrf::InputError, a std::invalid_argument) arrive in Python as ValueError;
// arrays of the wrong kind are rejected with TypeError before any work starts.
#include <pybind11/pybind11.h>

#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "Compiled engine of labelranker_fast (private: use the labelranker_fast API).";
  lrf::bindings::bind_accumulator(m);
  lrf::bindings::bind_blas(m);
}
