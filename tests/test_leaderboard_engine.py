"""A leaderboard of real runs made in the test session (the shared SmolLM2 engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.experiment import run_experiment
from evals.leaderboard import build_leaderboard
from reasoning.build import compose_config

pytestmark = pytest.mark.engine


def test_a_leaderboard_of_real_runs_with_plots_audit_and_viewers(engine, tmp_path: Path) -> None:  # noqa: ANN001
    runs = tmp_path / "runs"
    for name, overrides in {
        "greedy": ["search=greedy"],
        "best_of_n": ["search=best_of_n", "search.n=2"],
    }.items():
        cfg = compose_config(
            [*overrides, "search.max_tokens=64", "dataset.arith.n=4", "progress=false"]
        )
        run_experiment(cfg, runs / name)
    board = build_leaderboard([runs], tmp_path / "board", n_bootstrap=200)
    assert board.errors == []
    table = board.table.set_index("search")
    assert set(table.index) == {"greedy", "best_of_n"} and set(table["n"]) == {4}
    for search in ("greedy", "best_of_n"):
        row = table.loc[search]
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
        assert 0 < row["tokens_per_problem"] <= 64 * (2 if search == "best_of_n" else 1)
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "audit.md"):
        assert (tmp_path / "board" / name).stat().st_size > 0
    for suffix in ("png", "svg"):
        assert (tmp_path / "board" / f"frontier-arith.{suffix}").stat().st_size > 1000
    assert board.audit_counts["checked"] == 8
    pages = sorted((tmp_path / "board" / "viewers").glob("row*/problems/*.html"))
    assert len(pages) == 8
