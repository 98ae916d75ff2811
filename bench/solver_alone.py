"""The solver alone, with no other library's BLAS called before it, at the solver bench's
sizes: ScatterAccumulator.solve(None, 1) on `baselines.make_solver_problem` states.

    python bench/solver_alone.py [--repeat 5]

`report.solver` interleaves our solve with scipy's, which is fair to noise but not to
threads: after each of its calls scipy's OpenBLAS keeps a thread spinning on a core for
a while (it is a separate library from the engine's), and the engine's solver, which runs
its products on its own threads, then shares that core. A user's solve follows the
engine's accumulation instead. Each size here runs in a fresh process that builds its
problem with numpy on one thread (so that no numpy BLAS thread spins either) and then
runs only our solver; the time is the minimum of --repeat solves after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, sys, time
sys.path.insert(0, {bench!r})
import baselines as B
import labelranker_fast as lrf
from threadpoolctl import threadpool_limits
with threadpool_limits(1):  # no numpy BLAS thread left spinning beside the solves
    state = B.make_solver_problem({d}, {c})
acc = lrf.ScatterAccumulator.from_state(state)
B.ours_solve_top(acc)
best = float("inf")
for _ in range({repeat}):
    t = time.perf_counter()
    B.ours_solve_top(acc)
    best = min(best, time.perf_counter() - t)
print(json.dumps(best))
"""


def main(argv=None):
    import os

    bench = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, bench)
    import baselines as B

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    print("| d | C | ours, alone |\n| --- | --- | --- |")
    for d, c in B.SOLVER_SIZES:
        code = CHILD.format(bench=bench, d=d, c=c, repeat=args.repeat)
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        print(f"| {d} | {c} | {json.loads(out.stdout):.4f} s |", flush=True)


if __name__ == "__main__":
    main()
