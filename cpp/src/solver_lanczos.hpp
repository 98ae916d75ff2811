// The solver's internal pieces shared between solver.cpp and solver_lanczos.cpp.
#pragma once

#include "labelranker/types.hpp"
#include "labelranker/workers.hpp"

namespace lrf::solver_detail {

// S = L L^T in place (lower triangle) on the team's threads; the index of the first
// non-positive pivot, or -1. The same bits for every thread count.
Index cholesky_lower(MatrixXd* a, Team& team);

// The largest eigenpair of the symmetric positive semidefinite n x n matrix g (its upper
// triangle), by Lanczos with full reorthogonalisation from a fixed start vector:
// O(n^2) per step instead of the O(n^3) tridiagonalisation of a dense solver. The result
// is certified before it is returned: its residual is checked, and a Cholesky
// factorisation of sigma I - g with sigma a hair above the eigenvalue proves that no
// eigenvalue was missed above it. Returns false (and leaves the outputs unspecified) when
// it did not converge within its step budget or the certificate failed: callers then use
// a dense solver. Bit-identical for every thread count (the certificate's factorisation
// and the products run on the team). The certificate factorises in g's place: *overwritten says
// whether g was used up (whatever the result).
bool lanczos_top(MatrixXd* g, Team& team, double* lambda, VectorXd* vector, bool* overwritten);

}  // namespace lrf::solver_detail
