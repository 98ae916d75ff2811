#include "labelranker/pipeline.hpp"

#include <cmath>
#include <utility>

#include "labelranker/blas.hpp"
#include "labelranker/errors.hpp"

namespace lrf {

Solution solve_and_rank(const ScatterAccumulator& acc, const Shrinkage& shrinkage, Index k) {
  blas::SerialScope serial;  // the solver spreads its own products (see fixed_blas.hpp)
  acc.require_all_classes();
  const double total = acc.total_weight();
  Solution out;
  // One team for the whole solve: its helpers wait awake between the products.
  Team::run(acc.n_threads(), [&](Team& team) {
    bool within_finite = false, between_finite = false;
    MatrixXd within = acc.within_scatter(1.0 / total, &within_finite, &team);  // S = S_w / N
    RowMatrixXd centered;  // the class means, computed once for the factor and the ranking
    VectorXd mean;
    MatrixXd between;
    acc.solver_inputs(total, &centered, &mean, &between, &between_finite);
    if (!std::isfinite(total) || !within_finite || !between_finite) {
      throw InputError(
          "the statistics are not finite (they overflowed float64); "
          "rescale the features or the weights");
    }
    out.discriminant =
        solve_discriminant(std::move(within), std::move(between), shrinkage, k, total, team);
    out.ranking = rank_classes(centered, out.discriminant.directions);
    out.mean = std::move(mean);
  });
  return out;
}

}  // namespace lrf
