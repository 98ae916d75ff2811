// The ordered block reduction: blocks of rows are processed by several worker threads and
// their results added up in block order, so the sum has the same bits for every thread
// count. Engine-internal.
#pragma once

#include <atomic>
#include <functional>

#include "labelranker/types.hpp"

namespace lrf {

// process(lane, b, stop) computes block b into lane `lane`'s buffers; it may return false,
// having abandoned the block, once `stop` is set (another lane failed). reduce(lane, b)
// adds lane `lane`'s block b to the result; it runs for b = 0, 1, ..., n_blocks - 1 in
// that order, one at a time, each after its process call. Lane 0 is the calling thread
// (which alone may poll for interrupts); with lanes == 1 everything runs there.
//
// Blocks are claimed in order whichever threads run, so lanes that cannot be started
// (thread limits) only mean the same blocks run on fewer threads, reduced in the same
// order. The first exception from process or reduce stops every lane and is rethrown once
// all have returned; the lanes' buffers are then in an unspecified state.
void reduce_blocks_in_order(
    Index n_blocks, int lanes,
    const std::function<bool(int, Index, const std::atomic<bool>&)>& process,
    const std::function<void(int, Index)>& reduce);

}  // namespace lrf
