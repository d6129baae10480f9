"""The `reason-leaderboard` command: run directories in, tables, plots and an audit out."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evals.leaderboard.audit import TIMEOUT_S
from evals.leaderboard.stats import N_BOOTSTRAP, SEED

DESCRIPTION = """\
Build a leaderboard from finished `reason` run directories.

Each RUN_DIR is searched recursively for run directories (a Hydra multirun sweep folder
holds many). Runs that differ only by seed are pooled into one row. Incomplete runs
(fewer results than their dataset, or no summary.json) are kept and flagged; damaged
ones are reported with the file and line at fault and never stop the others.

Writes into --out: leaderboard.md, leaderboard.csv, leaderboard.html (sortable,
filterable, with a per-problem matrix linking to the traces), frontier-<dataset>.png
and .svg, equal-compute.md/.csv, audit.md/.csv (the grader checked by plain
math-verify) and, with --compare, compare.md."""

EPILOG = """\
examples:
  reason -m search=best_of_n search.n=1,4,8 dataset=arith dataset.limit=30
  reason-leaderboard runs/multirun/2026-01-05/10-00-00 --out board
  reason-leaderboard runs/ --out board --compare 2 5       # rows by number or hash prefix

exit status: 0 when at least one run was read, 1 when none, 2 for bad arguments.
See docs/leaderboard.md for every column and statistic."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="reason-leaderboard",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run or sweep folders")
    parser.add_argument("--out", required=True, metavar="DIR", help="where to write (created)")
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("ROW_A", "ROW_B"),
        help="paired bootstrap of row A minus row B (row number or config hash prefix)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=N_BOOTSTRAP,
        metavar="N",
        help=f"bootstrap resamples (default {N_BOOTSTRAP})",
    )
    parser.add_argument(
        "--seed", type=int, default=SEED, metavar="S", help=f"bootstrap seed (default {SEED})"
    )
    parser.add_argument("--no-audit", action="store_true", help="skip the grader audit")
    parser.add_argument(
        "--audit-timeout",
        type=float,
        default=TIMEOUT_S,
        metavar="SECONDS",
        help=f"math-verify deadline per audited result (default {TIMEOUT_S:g})",
    )
    args = parser.parse_args(argv)
    if args.bootstrap < 1:
        parser.error("--bootstrap must be at least 1")
    if args.audit_timeout <= 0:
        parser.error("--audit-timeout must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from evals.leaderboard.build import build_leaderboard

    try:
        board = build_leaderboard(
            args.run_dirs,
            args.out,
            compare=args.compare,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            audit=not args.no_audit,
            audit_timeout_s=args.audit_timeout,
        )
    except ValueError as exc:  # an unknown --compare row: nothing written
        print(f"reason-leaderboard: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out names a file, or cannot be written
        print(f"reason-leaderboard: error: {exc}", file=sys.stderr)
        return 2
    for error in board.errors:
        print(f"problem   {error}", file=sys.stderr)
    usable = sum(run.usable for run in board.runs)
    flagged = sum(run.incomplete for run in board.runs if run.usable)
    print(
        f"read      {usable} run(s) into {len(board.table)} row(s)"
        + (f"; {flagged} incomplete (flagged)" if flagged else "")
        + (f"; {len(board.errors)} problem(s), listed above" if board.errors else "")
    )
    if board.comparison is not None:
        print(board.comparison.text())
    if board.audit is not None:
        c = board.audit_counts
        print(f"audit     {c['checked']} results re-graded: {c['disagree']} disagreement(s)")
    for path in board.files:
        print(f"wrote     {path}")
    if not usable:
        print("reason-leaderboard: error: no run could be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
