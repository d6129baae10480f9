"""`build_leaderboard`: read the runs, compute the rows, write every output file."""

from __future__ import annotations

import os
import re
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
from evals.leaderboard.table import (
    build_table,
    group_runs,
    write_csv,
    write_markdown,
    write_safe_csv,
)
from evals.rundir import TRACES
from evals.viewer.page import build_viewer

VIEWERS = "viewers"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SEED_CHARS = 40  # of a seed in a viewer folder's name


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
    prepare_out(out)
    board = Leaderboard(runs, errors, table, groups, equal_compute(table))
    write_markdown(table, out / "leaderboard.md")
    write_csv(table, out / "leaderboard.csv")
    viewers = _write_viewers(table, groups, out, errors) if viewer else {}
    write_html(table, groups, out / "leaderboard.html", [str(e) for e in errors], viewers)
    (out / "equal-compute.md").write_text(
        equal_compute_markdown(board.equal_compute), encoding="utf-8", errors="replace"
    )
    write_safe_csv(board.equal_compute, out / "equal-compute.csv")
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


def prepare_out(out: Path) -> None:
    """Create `--out`; OSError (NotADirectoryError, FileExistsError) with one clear message
    when it, or a folder above it, is a file."""
    for folder in (out, *out.parents):
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                raise NotADirectoryError(f"--out {out}: {folder} is a file, not a folder")
            break
    out.mkdir(parents=True, exist_ok=True)


def viewer_folder(row: int, seed: object) -> str:
    """`row<N>-seed<S>`: a single folder name whatever the seed holds (a record's `seed` is
    data: `../../victim` must not leave `--out`); anything but letters, digits, `.`, `_` and
    `-` becomes `_`, and the seed is cut to SEED_CHARS."""
    text = _UNSAFE.sub("_", str(seed))[:SEED_CHARS] or "_"
    return f"row{int(row)}-seed{text}"


def inside(path: Path, root: Path) -> bool:
    """Whether `path`, links resolved, is `root` or under it."""
    return path.resolve().is_relative_to(root.resolve())


def _write_viewers(
    table: pd.DataFrame, groups: dict[str, list[Run]], out: Path, errors: list[RunError]
) -> dict[str, Path]:
    """One trace viewer per run, `viewers/row<N>-seed<S>/` (`viewer_folder`; a second run of
    the same name gets `-2`, ...), always under `out`; a run without traces and every
    unreadable trace are located errors, not a stop."""
    viewers: dict[str, Path] = {}
    taken: set[str] = set()
    for h, row in zip(table["config_hash"], table["row"], strict=True):
        for run in groups[h]:
            name = base = viewer_folder(int(row), run.seed)
            k = 1
            while name in taken:
                k += 1
                name = f"{base}-{k}"
            taken.add(name)
            target = out / VIEWERS / name
            if not inside(target, out):  # a link planted in --out: never written through
                errors.append(RunError(run.path, f"no trace viewer: {target} leads out of {out}"))
                continue
            try:
                written = build_viewer(run.path, target)
            except (OSError, ValueError) as exc:
                errors.append(RunError(run.path, f"no trace viewer: {exc}"))
                continue
            errors.extend(
                RunError(run.path / TRACES / file, f"trace not shown: {why}")
                for file, why in written.unreadable.items()
            )
            viewers[str(run.path)] = target
    return viewers
