"""The `reason-advise` command: which configurations of a leaderboard to run at a budget."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from evals.leaderboard.stats import N_BOOTSTRAP, SEED

DESCRIPTION = """\
Read a leaderboard folder written by `reason-leaderboard` and show, for a dataset and a
budget in mean generated tokens per problem, the configurations on the accuracy-cost
frontier within the budget, best first: accuracy with its 95% CI, tokens, verifier calls
and wall seconds per problem. The best is compared with each other frontier row on the
problems both graded (paired bootstrap); a difference whose CI contains 0 is marked not
significant, with the share of the best's tokens the cheaper row spends.

A row exactly at the budget is within it. Incomplete rows are left out (named). Without
--model every model of the dataset gets its own frontier."""

EPILOG = """\
examples:
  reason-advise board --dataset arith --budget 800
  reason-advise board --dataset math500 --model smollm2-135m --budget 2000 --json
  reason search=auto search.advisor=board budget.generated_tokens=800   # run the pick

exit status: 0 with advice, 2 when the board cannot answer (no board, no row for the
dataset and model, nothing within the budget) or for bad arguments.
See docs/leaderboard.md ("Choosing a configuration: the budget advisor")."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="reason-advise",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("board", metavar="BOARD_DIR", help="a reason-leaderboard --out folder")
    parser.add_argument("--dataset", required=True, help="dataset name, as in the board")
    parser.add_argument(
        "--budget",
        required=True,
        type=float,
        metavar="TOKENS",
        help="mean generated tokens per problem, at most",
    )
    parser.add_argument("--model", default=None, help="model name (default: every model)")
    parser.add_argument(
        "--verifier", default=None, help="only rows with this verifier (default: any)"
    )
    parser.add_argument("--json", action="store_true", help="print the picks as JSON")
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
    args = parser.parse_args(argv)
    if not args.budget > 0 or args.budget == float("inf"):
        parser.error("--budget must be a finite number of tokens > 0")
    if args.bootstrap < 1:
        parser.error("--bootstrap must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from evals.leaderboard.advisor import AdvisorError, advise_board, picks_json

    try:
        advice = advise_board(
            args.board,
            dataset=args.dataset,
            budget=args.budget,
            model=args.model,
            verifier=args.verifier,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
        )
    except AdvisorError as exc:
        print(f"reason-advise: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(picks_json(advice), indent=2))
        return 0
    print("\n\n".join(a.text() for a in advice))
    for a in advice:
        if a.unreadable:
            print(
                f"note      runs of row(s) {', '.join(a.unreadable)} could not be read from "
                "the board's run_dirs: those rows are not compared",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
