#include "labelranker/memory.hpp"

#include <cstdint>
#include <cstdio>
#include <sstream>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace lrf {

void advise_huge_pages(void* data, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t last = (begin + bytes) & ~(kHuge - 1);
  // Advice only: a kernel without THP (or a refusal) leaves the pages as they were.
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

std::string format_bytes(long double bytes) {
  static const char* const kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  constexpr int kLast = 6;
  int unit = 0;
  long double value = bytes;
  while (unit < kLast && value >= 999.5L) {  // what rounds to 1000 goes one unit up
    value /= 1024.0L;
    ++unit;
  }
  char buf[64];
  if (unit == 0) {
    std::snprintf(buf, sizeof buf, "%.0Lf bytes", value);
  } else {
    // Three significant digits, trailing zeros and point kept ("32.0", "7.28", "512."),
    // exactly as numpy writes them.
    std::snprintf(buf, sizeof buf, "%#.3Lg", value);
    return std::string(buf) + " " + kUnits[unit];
  }
  return buf;
}

OutOfMemory::OutOfMemory(std::int64_t rows, std::int64_t cols, std::size_t item_size,
                         const char* dtype, const char* what) {
  long double bytes = static_cast<long double>(rows) * static_cast<long double>(item_size);
  if (cols >= 0) bytes *= static_cast<long double>(cols);
  std::ostringstream msg;
  msg << "Unable to allocate " << format_bytes(bytes) << " for an array with shape (" << rows;
  if (cols >= 0) msg << ", " << cols;
  else msg << ",";
  msg << ") and data type " << dtype << " (" << what << ")";
  message_ = msg.str();
}

}  // namespace lrf
