"""The leaderboard: tables, frontier plots, a paired comparison and a grader audit built from
finished run directories (docs/leaderboard.md). Imported lazily: the grading workers import
`evals.leaderboard.audit` without pandas' and matplotlib's start-up cost of the rest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evals.leaderboard.build import Leaderboard, build_leaderboard
    from evals.leaderboard.runs import Run, RunError, read_run, read_runs

__all__ = ["Leaderboard", "Run", "RunError", "build_leaderboard", "read_run", "read_runs"]

_HOMES = {
    "Leaderboard": "evals.leaderboard.build",
    "build_leaderboard": "evals.leaderboard.build",
    "Run": "evals.leaderboard.runs",
    "RunError": "evals.leaderboard.runs",
    "read_run": "evals.leaderboard.runs",
    "read_runs": "evals.leaderboard.runs",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
