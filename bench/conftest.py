"""Benchmarks (pytest-benchmark), run apart from the tests:

    python -m pytest bench -q

Every group times our code and its baseline on the same data in the same run; the summary
at the end prints their ratios (baseline time / our time, from the minimum of the rounds).
"""

import pytest

from baselines import HEADLINE, C, make_features

_TIMES = {}
RESULTS = {}  # (group, role) -> the result, for the agreement checks


@pytest.fixture
def record(benchmark):
    """Runs `benchmark.pedantic` once per test and files the minimum time and the result
    under (group, role); tests of one group compare their results through RESULTS."""

    def run(group, role, fn, rounds=3, warmup=1):
        benchmark.group = group
        result = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=warmup)
        _TIMES.setdefault(group, {})[role] = benchmark.stats.stats.min
        RESULTS[group, role] = result
        return result

    return run


@pytest.fixture(scope="session")
def imagenet_like():
    """float32 features 200,000 x 768 with 100 classes (a ViT-B on a large training set)."""
    return make_features(*HEADLINE, C)


def pytest_terminal_summary(terminalreporter):
    if not _TIMES:
        return
    tr = terminalreporter
    tr.section("ratios (same run; >1 means ours is faster)")
    for group, roles in _TIMES.items():
        ours = roles.get("ours")
        for role, t in roles.items():
            if role != "ours" and ours:
                tr.write_line(f"{group}: {role} {t:.4f} s / ours {ours:.4f} s = {t / ours:.2f}x")
