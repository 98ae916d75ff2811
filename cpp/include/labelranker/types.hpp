// The engine's index and matrix types, shared by every layer (accumulator, solver, ranking).
#pragma once

#include <Eigen/Core>

#include <cstdint>

namespace lrf {

using Index = std::int64_t;
using MatrixXd = Eigen::MatrixXd;  // column-major
using RowMatrixXd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using VectorXd = Eigen::VectorXd;
using RowVectorXd = Eigen::RowVectorXd;

}  // namespace lrf
