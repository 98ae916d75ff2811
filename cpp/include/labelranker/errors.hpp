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

// An update stopped because its interrupt poll asked it to (Ctrl-C in Python); the update
// left no trace. The caller that installed the poll knows the reason and reports it.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// Throws the InputError for statistics that would overflow float64.
[[noreturn]] void throw_overflow();

}  // namespace lrf
