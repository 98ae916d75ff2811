// The generalized eigenproblem S_b w = lambda S w of LDA, by Cholesky reduction.
//
// With S = L L^T (the within-class covariance, shrunk if asked) and S_b = M M^T (M is
// d x C), the top directions are L^{-T} u for the top left singular vectors u of L^{-1} M;
// the singular values squared are the eigenvalues. Cost: one Cholesky, one triangular
// solve with C right-hand sides, and a min(C, d)-sized symmetric eigenproblem.
#pragma once

#include "labelranker/types.hpp"
#include "labelranker/workers.hpp"

namespace lrf {

struct Shrinkage {
  enum class Kind { kNone, kFixed, kOas };
  Kind kind = Kind::kNone;
  double value = 0.0;  // for kFixed, in [0, 1]
};

struct Discriminant {
  MatrixXd directions;    // (d x k), W^T S W = I, each oriented by the sign rule
  VectorXd eigenvalues;   // (k), descending
  double eigenvalue_sum;  // sum of all eigenvalues (for explained variance ratios)
  double shrinkage;       // the shrinkage intensity used
};

// Oracle Approximating Shrinkage intensity (Chen et al. 2010, eq. 23) of a covariance
// estimated from samples of total weight `total_weight` (their number when unweighted).
double oas_shrinkage(const MatrixXd& cov, double total_weight);

// Relative pivot below which S is treated as singular: a feature whose variance is
// explained by the previous ones up to this fraction makes the problem ill-posed.
inline constexpr double kSingularPivot = 1e-10;

// within_cov: S = S_w / N (d x d); between_factor: M with S_b / N = M M^T (d x C);
// total_weight: N, the accumulator's total weight (for OAS and messages). Returns the top
// k directions. Both matrices are worked on in place (move them in to spare the copies).
// Runs on the team's threads, with the same bits for every count.
Discriminant solve_discriminant(MatrixXd within_cov, MatrixXd between_factor,
                                const Shrinkage& shrinkage, Index k, double total_weight,
                                Team& team);

// Flips each column so that its largest-magnitude entry (lowest index on ties) is positive.
void orient_columns(MatrixXd* directions);

}  // namespace lrf
