#include "label_rows.hpp"

#include <algorithm>
#include <cmath>

#include "labelranker/blas.hpp"

#include "labelranker/memory.hpp"

namespace lrf::kernels {

void DenseLabelRows::reserve(Index rows, Index d, Index num_classes) {
  if (static_cast<Index>(slot_.size()) != num_classes) {
    allocate_vector(slot_, num_classes, "a worker's class slots", std::int32_t{-1});
    allocating<std::int64_t>(kMaxClasses, -1, "a worker's class list",
                             [&] { present_.reserve(kMaxClasses + 1); });
  }
  if (means_.rows() < rows || means_.cols() != d) {
    allocate(weights_, rows, kMaxClasses, "a worker's dense label weights");
    allocate(scaled_, rows, kMaxClasses, "a worker's scaled label weights");
    allocate(shifts_, kMaxClasses, d, "a worker's dense label shifts");
    allocate(means_, rows, d, "a worker's row mean shifts");
    allocate(centred_, rows, d, "a worker's centred rows (float64)");
    allocate(class_sums_, kMaxClasses, d, "a worker's dense class sums");
    allocate(gram_, kMaxClasses, kMaxClasses, "a worker's label-weight Gram matrix");
  }
}

bool DenseLabelRows::dense(const RowSet& set, Index first, Index m) {
  for (Index k : present_) slot_[k] = -1;
  present_.clear();
  const std::int64_t begin = set.indptr[first], end = set.indptr[first + m];
  for (std::int64_t e = begin; e < end; ++e) {
    const Index k = set.cols[e];
    if (slot_[k] >= 0) continue;
    if (static_cast<Index>(present_.size()) == kMaxClasses) return false;
    slot_[k] = static_cast<std::int32_t>(present_.size());
    present_.push_back(k);
  }
  const Index P = static_cast<Index>(present_.size());
  return P > 1 && 4 * (end - begin) >= m * P;
}

template <class T>
void DenseLabelRows::centre(const T* x, const RowSet& set, Index first, Index m, Index d,
                            const double* shifts, const double* totals, double scale, T* z,
                            const std::int32_t* slot, double* sums, double* corrections,
                            double* class_counts) {
  // Row-major throughout; the weight buffers have kMaxClasses columns, the rest d.
  const Index P = static_cast<Index>(present_.size());
  const Index ldw = kMaxClasses;
  double* W = weights_.data();
  double* V = scaled_.data();
  for (Index r = 0; r < m; ++r) std::fill(W + r * ldw, W + r * ldw + P, 0.0);
  for (Index r = 0; r < m; ++r) {
    for (std::int64_t e = set.indptr[first + r]; e < set.indptr[first + r + 1]; ++e) {
      W[r * ldw + slot_[set.cols[e]]] += set.vals[e];
      class_counts[slot[set.cols[e]]] += set.vals[e];
    }
  }
  const double* ref = shifts + present_[0] * d;
  double* S = shifts_.data();
  for (Index p = 0; p < P; ++p) {
    const double* s = shifts + present_[p] * d;
    for (Index j = 0; j < d; ++j) S[p * d + j] = s[j] - ref[j];
  }
  double* A = means_.data();
  blas::gemm_rows(false, false, m, d, P, 1.0, W, ldw, S, d, 0.0, A, d);  // W S'
  double* Z = centred_.data();
  for (Index r = 0; r < m; ++r) {
    const double total = totals[r];
    const double inv = total > 0.0 ? 1.0 / total : 0.0;
    const T* xr = x + set.x_row(first + r) * d;
    const T root = static_cast<T>(std::sqrt(total) * scale);
    for (Index j = 0; j < d; ++j) {
      const double v = (static_cast<double>(xr[j]) - ref[j]) - A[r * d + j] * inv;
      Z[r * d + j] = total > 0.0 ? v : 0.0;
      z[r * d + j] = static_cast<T>(v) * root;
    }
    const double root_inv = std::sqrt(inv);  // V = diag(1/sqrt(w)) W: V^T V = W^T diag(1/w) W
    for (Index p = 0; p < P; ++p) V[r * ldw + p] = W[r * ldw + p] * root_inv;
  }
  double* G = gram_.data();
  blas::gemm_rows(true, false, P, P, m, 1.0, V, ldw, V, ldw, 0.0, G, ldw);
  // U = N S' - G S' (N: the column sums of W) to the corrections; T = W^T Z - U to the sums.
  double* U = class_sums_.data();
  blas::gemm_rows(false, false, P, d, P, -1.0, G, ldw, S, d, 0.0, U, d);
  for (Index p = 0; p < P; ++p) {
    double n_p = 0.0;
    for (Index r = 0; r < m; ++r) n_p += W[r * ldw + p];
    double* u = U + p * d;
    double* c = corrections + slot[present_[p]] * d;
    double* t = sums + slot[present_[p]] * d;
    for (Index j = 0; j < d; ++j) {
      u[j] += n_p * S[p * d + j];
      c[j] += u[j];
      t[j] -= u[j];
    }
  }
  blas::gemm_rows(true, false, P, d, m, 1.0, W, ldw, Z, d, 0.0, U, d);  // W^T Z
  for (Index p = 0; p < P; ++p) {
    double* t = sums + slot[present_[p]] * d;
    for (Index j = 0; j < d; ++j) t[j] += U[p * d + j];
  }
}

template void DenseLabelRows::centre(const float*, const RowSet&, Index, Index, Index,
                                     const double*, const double*, double, float*,
                                     const std::int32_t*, double*, double*, double*);
template void DenseLabelRows::centre(const double*, const RowSet&, Index, Index, Index,
                                     const double*, const double*, double, double*,
                                     const std::int32_t*, double*, double*, double*);

}  // namespace lrf::kernels
