#include "labelranker/ranking.hpp"

#include <algorithm>
#include <numeric>

#include "labelranker/errors.hpp"

namespace lrf {

Ranking rank_classes(const RowMatrixXd& centered_means, const MatrixXd& directions) {
  const Index c = centered_means.rows();
  Ranking out;
  out.centroids = centered_means * directions;
  // Sorting needs finite keys (NaN breaks the ordering the sort relies on).
  if (!out.centroids.allFinite()) {
    throw SingularError(
        "the projected class centroids overflow float64 (class means too "
        "many within-class standard deviations apart); use shrinkage or "
        "rescale the features");
  }

  Index anchor = 0;
  for (Index i = 1; i < c; ++i)
    if (out.centroids(i, 0) < out.centroids(anchor, 0)) anchor = i;
  // One dimension: the distance to the smallest centroid is c_i - c_anchor, exactly.
  Eigen::VectorXd distance(c);
  for (Index i = 0; i < c; ++i) {
    distance[i] = directions.cols() == 1
                      ? out.centroids(i, 0) - out.centroids(anchor, 0)
                      : (out.centroids.row(i) - out.centroids.row(anchor)).norm();
  }
  if (!distance.allFinite()) {
    throw SingularError(
        "the distances between projected class centroids overflow float64; "
        "use shrinkage or rescale the features");
  }

  out.order.resize(static_cast<std::size_t>(c));
  std::iota(out.order.begin(), out.order.end(), std::int64_t{0});
  std::stable_sort(out.order.begin(), out.order.end(),
                   [&](std::int64_t a, std::int64_t b) { return distance[a] < distance[b]; });
  out.positions.resize(out.order.size());
  for (std::size_t p = 0; p < out.order.size(); ++p)
    out.positions[static_cast<std::size_t>(out.order[p])] = static_cast<std::int64_t>(p);
  return out;
}

}  // namespace lrf
