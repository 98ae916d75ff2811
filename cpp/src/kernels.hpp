// The row kernels of the update path: the centring of rows (the only O(n d) loop), the
// weight exponent of a block and the folds of block moments into upper triangles.
// Engine-internal.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "labelranker/types.hpp"

namespace lrf::kernels {

// upper(dst) += upper(src), both n x n column-major with leading dimension n.
template <class T>
void add_upper(double* dst, const T* src, Index n) {
  for (Index j = 0; j < n; ++j) {
    double* __restrict__ d = dst + j * n;
    const T* __restrict__ s = src + j * n;
    for (Index i = 0; i <= j; ++i) d[i] += static_cast<double>(s[i]);
  }
}

// upper(dst) = [upper(base) +] upper(src) * 2^(2 e): a block moment computed from rows
// scaled by 2^-e (base == nullptr: assigned; base may be dst). The factor is applied as
// two exact multiplications by 2^e (2^(2e) itself may not be representable); with e = 0
// this is the plain sum (or copy), bit for bit.
template <class T>
void fold_upper_scaled(double* dst, const double* base, const T* src, Index n, int e) {
  const double g = std::ldexp(1.0, e);
  for (Index j = 0; j < n; ++j) {
    double* d = dst + j * n;
    const T* __restrict__ s = src + j * n;
    if (base == nullptr) {
      for (Index i = 0; i <= j; ++i) d[i] = (static_cast<double>(s[i]) * g) * g;
    } else {
      const double* b = base + j * n;
      for (Index i = 0; i <= j; ++i) d[i] = b[i] + (static_cast<double>(s[i]) * g) * g;
    }
  }
}

// Calls f(i, j) for every entry i >= j of the lower triangle of an n x n matrix, in
// 32 x 32 tiles: writing a lower triangle from the upper one reads the transpose, and a
// column-major read of it strides by n, which for d x d matrices of a few MiB costs more
// than the solver's BLAS calls around it.
template <class F>
inline void for_lower_tiles(Index n, F f) {
  constexpr Index kTile = 32;
  for (Index jb = 0; jb < n; jb += kTile) {
    for (Index ib = jb; ib < n; ib += kTile) {  // tile rows ib.., columns jb..
      const Index i_end = std::min(n, ib + kTile), j_end = std::min(n, jb + kTile);
      for (Index j = jb; j < j_end; ++j)
        for (Index i = std::max(ib, j); i < i_end; ++i) f(i, j);
    }
  }
}

// Copies the strict upper triangle of the n x n column-major a onto its lower one.
// Returns whether every entry is finite (inf * 0 and NaN * 0 are NaN, so one sum of x * 0
// over the triangle tells, in the same pass).
inline bool mirror_upper(double* a, Index n) {
  double probe = 0.0;
  for_lower_tiles(n, [&](Index i, Index j) {
    a[i + j * n] = a[j + i * n];
    probe += a[i + j * n] * 0.0;
  });
  return probe == 0.0;
}

// Whether every entry of the upper triangle of the n x n column-major a is finite (see
// mirror_upper).
inline bool upper_finite(const double* a, Index n) {
  double probe = 0.0;
  for (Index j = 0; j < n; ++j)
    for (Index i = 0; i <= j; ++i) probe += a[i + j * n] * 0.0;
  return probe == 0.0;
}

// The lower triangle of sigma I - a from the upper triangle of a (n x n, column-major);
// the upper triangle is left as it is.
inline void shifted_negative_to_lower(double* a, Index n, double sigma) {
  for_lower_tiles(
      n, [&](Index i, Index j) { a[i + j * n] = i == j ? sigma - a[i + j * n] : -a[j + i * n]; });
}

// Weighted rows enter the moment as z = (x - s) sqrt(w), computed at input precision. For
// weights far from 1 (float32: sqrt(w) below 2^-126 or z^2 past 2^128) a block's rows are
// scaled by 2^-e, e the binary exponent of the block's largest sqrt(w), and its moment by
// 2^(2e) in float64: exact, and weights that differ by a constant factor give the same
// statistics up to that factor. Within +-kWeightExpSlack nothing is scaled.
constexpr int kWeightExpSlack = 32;

inline int block_weight_exponent(const double* w, Index n) {
  if (w == nullptr) return 0;
  double wmax = 0.0;
  for (Index i = 0; i < n; ++i) wmax = std::max(wmax, w[i]);
  if (!(wmax > 0.0)) return 0;
  int e = 0;
  std::frexp(std::sqrt(wmax), &e);
  return (e > kWeightExpSlack || e < -kWeightExpSlack) ? e : 0;
}

// The rows of each class are shifted by s_k; this is the value of s_k at input precision,
// so that (x - s_k) is computed exactly for x close to s_k (Sterbenz).
template <class T>
double round_to(double v) {
  return static_cast<double>(static_cast<T>(v));
}

// One row of the centring pass: z = (x - s) * sqrt(w) * scale, acc += w (x - s), for d
// features; weight == nullptr means w = 1 (and no scaling). scale is 2^-e of
// block_weight_exponent. The shift s holds values at input precision (round_to), so for
// float32 rows x - s is the float32 difference, as from a float32 copy of s. Cloned for
// AVX-512 and AVX2 on x86-64 (kernels.cpp).
void center_row(const float* x, const double* s, float* z, double* acc, Index d,
                const double* weight, double scale);
void center_row(const double* x, const double* s, double* z, double* acc, Index d,
                const double* weight, double scale);

// acc += x for d features (in float64), cloned like center_row.
void add_row(const float* x, double* acc, Index d);
void add_row(const double* x, double* acc, Index d);

// One row with label weights on several classes (cols, vals: its L entries, total weight
// `total` > 0): with a = sum_j vals_j s_{cols_j} / total (float64, into `a`),
//   z = (x - a) sqrt(total) * scale      at input precision, x - a taken in float64,
//   sums_k += v (x - s_k),  corrections_k += v (s_k - a)   for each entry (k, v).
// shifts is the C x d row-major float64 table (values at input precision); class k's rows
// of the sums and corrections tables are slot[k]. Cloned like center_row.
void center_label_row(const float* x, const double* shifts, const std::int64_t* cols,
                      const double* vals, Index L, double total, double scale, float* z,
                      const std::int32_t* slot, double* sums, double* corrections, double* a,
                      Index d);
void center_label_row(const double* x, const double* shifts, const std::int64_t* cols,
                      const double* vals, Index L, double total, double scale, double* z,
                      const std::int32_t* slot, double* sums, double* corrections, double* a,
                      Index d);

}  // namespace lrf::kernels
