// From accumulated statistics to a ranking: the whole solve in one call.
#pragma once

#include "labelranker/accumulator.hpp"
#include "labelranker/ranking.hpp"
#include "labelranker/solver.hpp"
#include "labelranker/types.hpp"

namespace lrf {

struct Solution {
  Discriminant discriminant;  // directions, eigenvalues, their sum, the shrinkage used
  Ranking ranking;            // centroids, order, positions
  VectorXd mean;              // (d) global mean mu
};

// Requires every class to have weight (SingularError otherwise), scales the scatters by
// the total weight N, refuses statistics that overflowed (InputError), then solves for the
// top k discriminant directions and ranks the classes along them. The BLAS runs on the
// accumulator's n_threads() threads; the result is the same for every count.
Solution solve_and_rank(const ScatterAccumulator& acc, const Shrinkage& shrinkage, Index k);

}  // namespace lrf
