#include "kernels.hpp"

#include <cmath>

namespace lrf::kernels {

// Cloned for AVX-512 and AVX2 on x86-64 (chosen at load time); the rest of the build stays
// baseline.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LRF_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LRF_CLONES
#endif
#define LRF_CENTER_ROW(T)                                                                         \
  LRF_CLONES void center_row(const T* __restrict__ x, const T* __restrict__ s, T* __restrict__ z, \
                             double* __restrict__ acc, Index d, const double* weight,             \
                             double scale) {                                                      \
    if (weight == nullptr) {                                                                      \
      for (Index j = 0; j < d; ++j) {                                                             \
        const T v = x[j] - s[j];                                                                  \
        z[j] = v;                                                                                 \
        acc[j] += static_cast<double>(v);                                                         \
      }                                                                                           \
    } else {                                                                                      \
      const double w = *weight;                                                                   \
      const T root = static_cast<T>(std::sqrt(w) * scale);                                        \
      for (Index j = 0; j < d; ++j) {                                                             \
        const T v = x[j] - s[j];                                                                  \
        z[j] = v * root;                                                                          \
        acc[j] += w * static_cast<double>(v);                                                     \
      }                                                                                           \
    }                                                                                             \
  }
LRF_CENTER_ROW(float)
LRF_CENTER_ROW(double)
#undef LRF_CENTER_ROW
#undef LRF_CLONES

}  // namespace lrf::kernels
