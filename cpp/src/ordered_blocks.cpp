#include "ordered_blocks.hpp"

#include <condition_variable>
#include <exception>
#include <mutex>

#include "labelranker/workers.hpp"

namespace lrf {

void reduce_blocks_in_order(
    Index n_blocks, int lanes,
    const std::function<bool(int, Index, const std::atomic<bool>&)>& process,
    const std::function<void(int, Index)>& reduce) {
  std::atomic<bool> stop{false};  // a lane failed or the call was interrupted
  if (lanes <= 1) {
    for (Index b = 0; b < n_blocks; ++b) {
      process(0, b, stop);
      reduce(0, b);
    }
    return;
  }
  std::atomic<Index> next{0};
  std::mutex mutex;
  std::condition_variable turn;
  Index reduced = 0;  // blocks reduced so far (guarded by mutex)
  bool failed = false;
  std::exception_ptr error;
  auto work = [&](int lane) {
    try {
      for (Index b = next++; b < n_blocks; b = next++) {
        if (!process(lane, b, stop)) return;
        std::unique_lock<std::mutex> lock(mutex);
        turn.wait(lock, [&] { return reduced == b || failed; });
        if (failed) return;
        reduce(lane, b);
        ++reduced;
        turn.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!failed) error = std::current_exception();
      failed = true;
      stop = true;
      turn.notify_all();
    }
  };
  run_on_threads(lanes, work);
  if (error) std::rethrow_exception(error);
}

}  // namespace lrf
