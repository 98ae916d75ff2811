// From class means and discriminant directions to the order of the classes.
#pragma once

#include <cstdint>
#include <vector>

#include "labelranker/types.hpp"

namespace lrf {

struct Ranking {
  MatrixXd centroids;                   // (C x k): (mu_c - mu) . w_j
  std::vector<std::int64_t> order;      // position -> class
  std::vector<std::int64_t> positions;  // class -> position
};

// The anchor is the class with the smallest first-component centroid; classes are placed by
// Euclidean distance to it in the discriminant space, ascending. Ties are broken by class
// index (a stable sort). In one dimension this is argsort of the centroids.
Ranking rank_classes(const RowMatrixXd& centered_means, const MatrixXd& directions);

}  // namespace lrf
