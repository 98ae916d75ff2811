// Allocation failures that say what could not be allocated.
//
// Every engine buffer whose size follows from user-given sizes (n_features, num_classes, a
// state's arrays, rows per call) is allocated through these helpers, so that running out
// of memory (or a byte count past 64 bits) surfaces as OutOfMemory, a std::bad_alloc whose
// message reads like numpy's: "Unable to allocate 32.0 TiB for an array with shape
// (2097152, 2097152) and data type float64 (the second moment)". pybind11 turns it into
// MemoryError with that message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace lrf {

class OutOfMemory : public std::bad_alloc {
 public:
  // cols < 0: a 1-D array of `rows` entries.
  OutOfMemory(std::int64_t rows, std::int64_t cols, std::size_t item_size, const char* dtype,
              const char* what);
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

// "7.28 TiB", "512. MiB", "100 bytes": three significant digits in binary units, as numpy
// prints them; the count is a long double, so sizes past 2^64 bytes are still described.
std::string format_bytes(long double bytes);

template <class T>
constexpr const char* dtype_name() {
  if constexpr (sizeof(T) == 8 && T(0.5) != T(0)) return "float64";
  else if constexpr (sizeof(T) == 4 && T(0.5) != T(0)) return "float32";
  else if constexpr (sizeof(T) == 8) return "int64";
  else return "int8";
}

// Runs f(); a std::bad_alloc from it becomes OutOfMemory for a (rows, cols) array of T
// (an OutOfMemory thrown inside f passes through unchanged).
template <class T, class F>
decltype(auto) allocating(std::int64_t rows, std::int64_t cols, const char* what, F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (const OutOfMemory&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw OutOfMemory(rows, cols, sizeof(T), dtype_name<T>(), what);
  }
}

// m.resize(rows, cols) (contents unspecified) for an Eigen matrix.
// Asks the kernel to back [data, data + bytes) with transparent huge pages where it is
// 2 MiB aligned (Linux; elsewhere nothing). Done before the first touch, it makes the page
// faults of a large table 512x fewer: at 100,000 classes and d = 768 the tables' 4 KiB
// faults cost more than their arithmetic. Only for buffers of at least kHugeBytes.
constexpr std::size_t kHugeBytes = std::size_t{4} << 20;
void advise_huge_pages(void* data, std::size_t bytes);

template <class M>
void allocate(M& m, std::int64_t rows, std::int64_t cols, const char* what) {
  using T = typename M::Scalar;
  const std::int64_t shown_cols = M::ColsAtCompileTime == 1 ? -1 : cols;  // a vector: (n,)
  allocating<T>(rows, shown_cols, what, [&] { m.resize(rows, cols); });
  const std::size_t bytes = static_cast<std::size_t>(m.size()) * sizeof(T);
  if (bytes >= kHugeBytes) advise_huge_pages(m.data(), bytes);
}
// The same, set to zero.
template <class M>
void allocate_zero(M& m, std::int64_t rows, std::int64_t cols, const char* what) {
  allocate(m, rows, cols, what);
  m.setZero();
}
// A std::vector resized to n entries of value.
template <class T>
void allocate_vector(std::vector<T>& v, std::int64_t n, const char* what, T value = T()) {
  allocating<T>(n, -1, what, [&] { v.assign(static_cast<std::size_t>(n), value); });
}
// A copy of m.
template <class M>
M copy_of(const M& m, const char* what) {
  using T = typename M::Scalar;
  return allocating<T>(m.rows(), m.cols(), what, [&] { return M(m); });
}

}  // namespace lrf
