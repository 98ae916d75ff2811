"""The label-order study: does the order of the classes in the head change fine-tuned
accuracy, on your model and data? (``labelranker study``; needs the torch extra.)

    from labelranker_fast.study import run_study
    out = run_study(quick=True, out_dir="study")     # digits, scratch/MAE/rotation ViTs
    print(out["markdown"])

See ``_protocol`` for the protocol and the controls, ``_arms`` for the lda arm and the
linear probe, ``_report``, ``_extras`` and ``_power`` for the statistics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ._protocol import QUICK, StudyConfig, run_protocol
from ._report import order_effect_test, summarize, write_report

__all__ = ["run_study", "StudyConfig", "QUICK", "summarize", "order_effect_test", "write_report"]


def run_study(
    *,
    quick: bool = False,
    out_dir: str = "study_results",
    log: Callable[[str], Any] = print,
    **options: Any,
) -> dict[str, Any]:
    """Runs the study and writes ``results.json``, ``report.md`` and ``accuracy.png``.

    Parameters
    ----------
    quick : bool
        Start from the ``QUICK`` settings (a smoke run).
    out_dir : str
        Output folder.
    log : callable
        Progress messages.
    **options :
        ``StudyConfig`` fields (``data``, ``backbones``, ``random_orders``, ``seeds``,
        ``epochs``, ...).

    Returns
    -------
    dict with "paths", "summary", "markdown" and "results".

    Raises
    ------
    TypeError
        An unknown option.
    ValueError
        Invalid settings or data (an unknown backbone or data set, a folder without
        classes).
    """
    fields = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"unknown study options {unknown}; valid: {sorted(fields)}")
    cfg = StudyConfig(**{**(QUICK if quick else {}), **options})
    results = run_protocol(cfg, log=log)
    results["config"]["quick"] = quick
    out = write_report(results, out_dir)
    out["results"] = results
    return out
