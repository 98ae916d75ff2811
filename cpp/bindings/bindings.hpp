// One registration function per bound area.
#pragma once

#include <pybind11/pybind11.h>

namespace lrf::bindings {
void bind_accumulator(pybind11::module_& m);
void bind_blas(pybind11::module_& m);
}  // namespace lrf::bindings
