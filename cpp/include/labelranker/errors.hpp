// Exceptions the engine throws for bad input. The bindings turn InputError into
// ValueError; messages are written for the user of the Python API.
#pragma once

#include <stdexcept>
#include <string>

namespace lrf {

struct InputError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// A system that has no well-defined answer (singular within-class scatter, classes without
// samples, identical class means).
struct SingularError : InputError {
  using InputError::InputError;
};

}  // namespace lrf
