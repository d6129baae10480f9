"""`build_leaderboard`: read the runs, compute the rows, write every output file."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evals.leaderboard.audit import TIMEOUT_S, audit_runs, write_audit
from evals.leaderboard.compare import Comparison, compare_rows, find_row, write_comparison
from evals.leaderboard.frontier import equal_compute, equal_compute_markdown
from evals.leaderboard.html import write_html
from evals.leaderboard.plots import plot_frontier
from evals.leaderboard.runs import Run, RunError, read_runs
from evals.leaderboard.stats import N_BOOTSTRAP, SEED
from evals.leaderboard.table import build_table, group_runs, write_csv, write_markdown
from evals.viewer import write_viewer


@dataclass
class Leaderboard:
    """What `build_leaderboard` read, computed and wrote."""

    runs: list[Run]
    errors: list[RunError]  # located, one per fault; the runs they name may still be rows
    table: pd.DataFrame
    groups: dict[str, list[Run]]  # config hash -> the runs (seeds) of that row
    equal_compute: pd.DataFrame
    comparison: Comparison | None = None
    audit: pd.DataFrame | None = None  # the disagreements; None when not audited
    audit_counts: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def build_leaderboard(
    run_dirs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    compare: Sequence[str] | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = SEED,
    audit: bool = True,
    audit_timeout_s: float = TIMEOUT_S,
    viewer: bool = True,
) -> Leaderboard:
    """Read every run under `run_dirs` and write the leaderboard into `out_dir`.

    `compare`: two row keys (a row number or a config hash prefix) for a paired comparison;
    an unknown key raises ValueError before anything is written. Bad runs never raise: they
    are in `Leaderboard.errors`. `viewer`: write each run's trace viewer under
    `out_dir/viewers/` (the runs themselves are only read) and link the per-problem matrix to it.
    """
    runs, errors = read_runs(run_dirs)
    groups = group_runs(runs)
    table = build_table(groups, n_bootstrap, seed)
    if compare is not None:
        if len(compare) != 2:
            raise ValueError("compare needs two rows")
        for key in compare:
            find_row(table, key)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    board = Leaderboard(runs, errors, table, groups, equal_compute(table))
    write_markdown(table, out / "leaderboard.md")
    write_csv(table, out / "leaderboard.csv")
    viewers = _write_viewers(table, groups, out, errors) if viewer else {}
    write_html(table, groups, out / "leaderboard.html", [str(e) for e in errors], viewers)
    (out / "equal-compute.md").write_text(equal_compute_markdown(board.equal_compute), "utf-8")
    board.equal_compute.to_csv(out / "equal-compute.csv", index=False)
    board.files = [
        out / name
        for name in (
            "leaderboard.md",
            "leaderboard.csv",
            "leaderboard.html",
            "equal-compute.md",
            "equal-compute.csv",
        )
    ]
    board.files += plot_frontier(table, out)
    if compare is not None:
        board.comparison = compare_rows(table, groups, compare[0], compare[1], n_bootstrap, seed)
        write_comparison(board.comparison, out / "compare.md")
        board.files.append(out / "compare.md")
    if audit:
        rows = {
            str(run.path): int(row)
            for h, row in zip(table["config_hash"], table["row"], strict=True)
            for run in groups[h]
        }
        audited = [run for members in groups.values() for run in members]
        board.audit, board.audit_counts = audit_runs(audited, rows, audit_timeout_s)
        board.files += write_audit(board.audit, board.audit_counts, out)
    return board


def _write_viewers(
    table: pd.DataFrame, groups: dict[str, list[Run]], out: Path, errors: list[RunError]
) -> dict[str, Path]:
    """One trace viewer per run, `viewers/row<N>-seed<S>/`; a run without traces is a located
    error, not a stop."""
    viewers: dict[str, Path] = {}
    for h, row in zip(table["config_hash"], table["row"], strict=True):
        for run in groups[h]:
            target = out / "viewers" / f"row{int(row)}-seed{run.seed}"
            try:
                write_viewer(run.path, target)
            except (OSError, ValueError) as exc:
                errors.append(RunError(run.path, f"no trace viewer: {exc}"))
                continue
            viewers[str(run.path)] = target
    return viewers
