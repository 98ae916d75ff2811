#include "labelranker/workers.hpp"

#include <cerrno>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace lrf {
namespace {
// Test hook: thread starts to let through, then thread starts to refuse.
std::mutex hook_mutex;
int starts_to_pass = 0, starts_to_fail = 0;  // guarded by hook_mutex

std::thread start_thread(const std::function<void(int)>& body, int index) {
  {
    std::lock_guard<std::mutex> lock(hook_mutex);
    if (starts_to_pass > 0) {
      --starts_to_pass;
    } else if (starts_to_fail > 0) {
      --starts_to_fail;
      throw std::system_error(EAGAIN, std::generic_category(), "thread start refused (test hook)");
    }
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
int fail_thread_starts(int k, int after) {
  std::lock_guard<std::mutex> lock(hook_mutex);
  const int pending = starts_to_fail;
  starts_to_fail = k < 0 ? 0 : k;
  starts_to_pass = starts_to_fail > 0 && after > 0 ? after : 0;
  return pending;
}
}  // namespace testing

}  // namespace lrf
