#include "labelranker/pipeline.hpp"

#include <cmath>
#include <utility>

#include "labelranker/blas.hpp"
#include "labelranker/errors.hpp"

namespace lrf {

Solution solve_and_rank(const ScatterAccumulator& acc, const Shrinkage& shrinkage, Index k) {
  blas::ThreadScope blas_threads(acc.n_threads());
  acc.require_all_classes();
  const double total = acc.total_weight();
  MatrixXd within = acc.within_scatter();
  within /= total;
  RowMatrixXd centered;  // the class means, computed once for the factor and the ranking
  VectorXd mean;
  acc.centered_and_global_means(&centered, &mean);
  MatrixXd between = acc.between_factor(centered);
  between /= std::sqrt(total);
  if (!std::isfinite(total) || !within.allFinite() || !between.allFinite()) {
    throw InputError(
        "the statistics are not finite (they overflowed float64); "
        "rescale the features or the weights");
  }
  Solution out;
  out.discriminant = solve_discriminant(std::move(within), std::move(between), shrinkage, k, total);
  out.ranking = rank_classes(centered, out.discriminant.directions);
  out.mean = std::move(mean);
  return out;
}

}  // namespace lrf
