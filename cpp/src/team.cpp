// Team (workers.hpp): helpers kept awake between the small parallel steps of one job.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>

#include "labelranker/workers.hpp"

namespace lrf {

namespace {

using Chunk = std::function<void(std::int64_t)>;
using Clock = std::chrono::steady_clock;

// How long a helper waits awake for the next step before it sleeps.
constexpr std::chrono::microseconds kAwake{1000};

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

struct Team::State {
  // The current step. fn and count are written before `generation` is bumped (release) and
  // stay fixed while `open` or while any helper is inside.
  const Chunk* fn = nullptr;
  std::int64_t count = 0;
  std::atomic<std::int64_t> next{0};
  std::atomic<std::uint64_t> generation{0};
  std::atomic<bool> open{false};
  std::atomic<int> inside{0};  // helpers working on the current step
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // guarded by mutex
  std::atomic<bool> stop{false};
  std::mutex mutex;  // for sleeping helpers (and `error`)
  std::condition_variable wake;

  // Takes indices of the current step until none is left or one failed.
  void work() {
    while (!failed.load(std::memory_order_relaxed)) {
      const std::int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= count) return;
      try {
        (*fn)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
        failed.store(true, std::memory_order_relaxed);
      }
    }
  }

  void serve() {
    std::uint64_t seen = 0;
    for (;;) {
      // Awake for a while, then asleep, until a new step or the end.
      const auto until = Clock::now() + kAwake;
      int spins = 0;
      while (generation.load(std::memory_order_acquire) == seen && !stop.load()) {
        std::this_thread::yield();  // gives way to the caller if they share a core
        if (++spins % 256 == 0 && Clock::now() > until) {
          std::unique_lock<std::mutex> lock(mutex);
          wake.wait(lock, [&] { return generation.load() != seen || stop.load(); });
        }
      }
      if (stop.load()) return;
      seen = generation.load(std::memory_order_acquire);
      inside.fetch_add(1);  // seq_cst with `open` below and in chunks(): see there
      if (open.load()) work();
      inside.fetch_sub(1);
    }
  }
};

void Team::run(int threads, const std::function<void(Team&)>& body) {
  State state;
  Team team(&state);
  if (threads <= 1) {
    body(team);
    return;
  }
  std::exception_ptr error;
  run_on_threads(threads, [&](int index) {
    if (index > 0) return state.serve();
    try {
      body(team);
    } catch (...) {
      error = std::current_exception();  // run_on_threads' jobs must not throw
    }
    {
      std::lock_guard<std::mutex> lock(state.mutex);
      state.stop.store(true);
    }
    state.wake.notify_all();
  });
  if (error) std::rethrow_exception(error);
}

void Team::chunks(std::int64_t count, const Chunk& fn) {
  if (count <= 0) return;
  State& s = *state_;
  s.fn = &fn;
  s.count = count;
  s.next.store(0, std::memory_order_relaxed);
  s.failed.store(false, std::memory_order_relaxed);
  s.error = nullptr;
  s.open.store(true);
  {
    std::lock_guard<std::mutex> lock(s.mutex);  // no helper misses the bump as it falls asleep
    s.generation.fetch_add(1, std::memory_order_release);
  }
  s.wake.notify_all();
  s.work();
  // Close the step, then wait for the helpers inside it: a helper either sees it closed
  // (and does nothing) or is counted in `inside` before we read it (both seq_cst).
  s.open.store(false);
  while (s.inside.load() != 0) relax();
  s.fn = nullptr;
  if (s.error) {
    std::exception_ptr error = s.error;
    s.error = nullptr;
    std::rethrow_exception(error);
  }
}

}  // namespace lrf
