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
#define LRF_CENTER_ROW(T)                                                           \
  LRF_CLONES void center_row(const T* __restrict__ x, const double* __restrict__ s, \
                             T* __restrict__ z, double* __restrict__ acc, Index d,  \
                             const double* weight, double scale) {                  \
    if (weight == nullptr) {                                                        \
      for (Index j = 0; j < d; ++j) {                                               \
        const T v = x[j] - static_cast<T>(s[j]);                                    \
        z[j] = v;                                                                   \
        acc[j] += static_cast<double>(v);                                           \
      }                                                                             \
    } else {                                                                        \
      const double w = *weight;                                                     \
      const T root = static_cast<T>(std::sqrt(w) * scale);                          \
      for (Index j = 0; j < d; ++j) {                                               \
        const T v = x[j] - static_cast<T>(s[j]);                                    \
        z[j] = v * root;                                                            \
        acc[j] += w * static_cast<double>(v);                                       \
      }                                                                             \
    }                                                                               \
  }
LRF_CENTER_ROW(float)
LRF_CENTER_ROW(double)
#undef LRF_CENTER_ROW

#define LRF_ADD_ROW(T)                                                                  \
  LRF_CLONES void add_row(const T* __restrict__ x, double* __restrict__ acc, Index d) { \
    for (Index j = 0; j < d; ++j) acc[j] += static_cast<double>(x[j]);                  \
  }
LRF_ADD_ROW(float)
LRF_ADD_ROW(double)
#undef LRF_ADD_ROW

namespace {
template <class T>
__attribute__((always_inline)) inline void label_row(
    const T* __restrict__ x, const double* __restrict__ shifts, const std::int64_t* cols,
    const double* vals, Index L, double total, double scale, T* __restrict__ z,
    const std::int32_t* slot, double* __restrict__ sums, double* __restrict__ corrections,
    double* __restrict__ a, Index d) {
  for (Index j = 0; j < d; ++j) a[j] = 0.0;
  for (Index e = 0; e < L; ++e) {
    const double v = vals[e] / total;
    const double* __restrict__ s = shifts + cols[e] * d;
    for (Index j = 0; j < d; ++j) a[j] += v * s[j];
  }
  const T root = static_cast<T>(std::sqrt(total) * scale);
  for (Index j = 0; j < d; ++j) z[j] = static_cast<T>(static_cast<double>(x[j]) - a[j]) * root;
  for (Index e = 0; e < L; ++e) {
    const double v = vals[e];
    const double* __restrict__ s = shifts + cols[e] * d;
    double* __restrict__ t = sums + slot[cols[e]] * d;
    double* __restrict__ u = corrections + slot[cols[e]] * d;
    for (Index j = 0; j < d; ++j) {
      t[j] += v * (static_cast<double>(x[j]) - s[j]);
      u[j] += v * (s[j] - a[j]);
    }
  }
}
}  // namespace

#define LRF_CENTER_LABEL_ROW(T)                                                                   \
  LRF_CLONES void center_label_row(const T* x, const double* shifts, const std::int64_t* cols,    \
                                   const double* vals, Index L, double total, double scale, T* z, \
                                   const std::int32_t* slot, double* sums, double* corrections,   \
                                   double* a, Index d) {                                          \
    label_row(x, shifts, cols, vals, L, total, scale, z, slot, sums, corrections, a, d);          \
  }
LRF_CENTER_LABEL_ROW(float)
LRF_CENTER_LABEL_ROW(double)
#undef LRF_CENTER_LABEL_ROW
#undef LRF_CLONES

}  // namespace lrf::kernels
