// Running one job on several threads, robust to threads that cannot be started.
#pragma once

#include <cstdint>
#include <functional>

namespace lrf {

// Calls body(0) on the calling thread and body(1), ..., body(n - 1) on new threads, and
// returns when all have returned; body must not throw. A thread that cannot be started
// (std::thread throws std::system_error under process or container thread limits:
// RLIMIT_NPROC, a pids cgroup) is not retried, and neither are the ones after it: the job
// runs on the threads that did start (at least the calling one), so body must share its
// work dynamically. Returns the number of threads that ran body, the calling one included.
int run_on_threads(int n, const std::function<void(int)>& body);

// Threads kept for the length of one job of many small parallel steps (the solver's
// products, its Lanczos steps), so that no step starts a thread: helpers started once wait
// awake between steps (on their own cores, where a thread woken or started per step is
// often queued behind the caller when another library's idle threads keep the other cores
// busy), and sleep after about a millisecond without work.
class Team {
 public:
  // Runs body on the calling thread with up to threads - 1 helpers (run_on_threads: fewer
  // when starts are refused); rethrows what body throws.
  static void run(int threads, const std::function<void(Team&)>& body);

  // Calls fn(i) once for every i in [0, count), on the caller and the helpers: each takes
  // the next index as it comes free, so fn must not depend on which thread runs it.
  // Returns when all have run; if fn throws, the indices not yet taken are skipped and the
  // first exception is rethrown here. Only the thread in body may call it.
  void chunks(std::int64_t count, const std::function<void(std::int64_t)>& fn);

  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;

 private:
  struct State;
  explicit Team(State* state) : state_(state) {}
  State* state_;
};

namespace testing {
// Test hook: after the next `after` thread starts of run_on_threads succeed, the k after
// them fail as if the system refused them (std::system_error, EAGAIN). Returns how many
// refusals were still pending before the call (k = 0 just reads and clears that count).
int fail_thread_starts(int k, int after);
}  // namespace testing

}  // namespace lrf
