#include "labelranker/workers.hpp"

#include <atomic>
#include <cerrno>
#include <system_error>
#include <thread>
#include <vector>

namespace lrf {
namespace {
std::atomic<int> failing_starts{0};  // test hook: thread starts still to refuse

std::thread start_thread(const std::function<void(int)>& body, int index) {
  int pending = failing_starts.load();
  while (pending > 0 && !failing_starts.compare_exchange_weak(pending, pending - 1)) {
  }
  if (pending > 0) {
    throw std::system_error(EAGAIN, std::generic_category(), "thread start refused (test hook)");
  }
  return std::thread(body, index);
}
}  // namespace

int run_on_threads(int n, const std::function<void(int)>& body) {
  std::vector<std::thread> pool;
  try {
    pool.reserve(static_cast<std::size_t>(n > 1 ? n - 1 : 0));
    for (int i = 1; i < n; ++i) pool.push_back(start_thread(body, i));
  } catch (const std::exception&) {
    // std::system_error (no thread left) or std::bad_alloc (no memory for its state): the
    // threads started so far and the calling one do the work.
  }
  body(0);
  for (auto& t : pool) t.join();
  return static_cast<int>(pool.size()) + 1;
}

namespace testing {
int fail_next_thread_starts(int k) { return failing_starts.exchange(k < 0 ? 0 : k); }
}  // namespace testing

}  // namespace lrf
