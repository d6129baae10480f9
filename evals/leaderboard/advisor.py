"""The budget advisor: which configurations of a leaderboard are worth running at a budget.

Given a dataset, a model and a budget in mean generated tokens per problem, the candidates are
the board's complete rows of that dataset and model that spent at most the budget; of them, the
accuracy-cost frontier (`frontier.pareto_mask`: no other row costs no more and scores at least
as much) is shown best first, and the best is compared with each other frontier row on the
problems both graded (`compare.compare_rows`, the paired bootstrap), so a cheaper row whose
difference is within noise is visible as such. Incomplete rows are left out (their accuracy is
on a subset of the problems, as on the frontier plot) and named in the output.

Pure over a leaderboard table and its runs (`advise`); `advise_board` reads both from a folder
written by `reason-leaderboard`.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from evals.leaderboard.compare import compare_rows
from evals.leaderboard.frontier import pareto_mask
from evals.leaderboard.runs import Run, read_runs
from evals.leaderboard.stats import N_BOOTSTRAP, SEED
from evals.leaderboard.table import FORMULA_START

BOARD_CSV = "leaderboard.csv"
# columns read as text whatever they hold (a config hash of digits is not a number)
_TEXT = (
    "dataset",
    "model",
    "search",
    "params",
    "verifier",
    "budget",
    "grader",
    "config_hash",
    "done",
    "search_params",
    "run_dirs",
)


class AdvisorError(ValueError):
    """The board cannot answer: no board, no row for the dataset and model, nothing within the
    budget. The message names the board, what was asked and what the board has."""


@dataclass(frozen=True)
class Pick:
    """One frontier row; for every row but the best, its paired difference from the best."""

    row: int
    dataset: str
    model: str
    search: str
    params: str
    search_params: dict[str, Any]
    verifier: str
    accuracy: float
    ci_low: float
    ci_high: float
    tokens_per_problem: float
    verifier_calls_per_problem: float
    wall_s_per_problem: float
    config_hash: str
    # best - this row on the problems both graded (None: the best itself, or runs unreadable)
    diff: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    n_common: int | None = None

    @property
    def significant(self) -> bool | None:
        """Whether the paired interval leaves out 0 (None: not compared)."""
        if self.diff_low is None or self.diff_high is None:
            return None
        return not self.diff_low <= 0.0 <= self.diff_high

    def as_json(self, best: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "row": self.row,
            "dataset": self.dataset,
            "model": self.model,
            "search": self.search,
            "params": self.params,
            "search_params": self.search_params,
            "verifier": self.verifier,
            "accuracy": _num(self.accuracy),
            "ci_low": _num(self.ci_low),
            "ci_high": _num(self.ci_high),
            "tokens_per_problem": _num(self.tokens_per_problem),
            "verifier_calls_per_problem": _num(self.verifier_calls_per_problem),
            "wall_s_per_problem": _num(self.wall_s_per_problem),
            "config_hash": self.config_hash,
            "best": best,
        }
        if not best:
            out |= {
                "diff": _num(self.diff),
                "diff_low": _num(self.diff_low),
                "diff_high": _num(self.diff_high),
                "n_common": self.n_common,
                "significant": self.significant,
            }
        return out


def _num(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


@dataclass
class Advice:
    """The frontier of one dataset and model within a budget, best first."""

    board: str
    dataset: str
    model: str
    budget: float
    picks: list[Pick]
    within: int  # complete rows within the budget (the frontier's candidates)
    left_out: list[str] = field(default_factory=list)  # `row 4 (incomplete)`
    unreadable: list[str] = field(default_factory=list)  # rows whose runs could not be read

    @property
    def best(self) -> Pick:
        return self.picks[0]

    def text(self) -> str:
        """The table and the paired comparisons, as `reason-advise` prints them."""
        lines = [
            f"dataset   {self.dataset}   model {self.model}   "
            f"budget {self.budget:g} tokens/problem   board {self.board}",
            f"frontier  {len(self.picks)} of {self.within} complete row(s) within the budget"
            + (f"; left out: {', '.join(self.left_out)}" if self.left_out else ""),
            f"{'rank':>4}  {'row':>4}  {'search':<36} {'accuracy':>8}  {'95% CI':<13} "
            f"{'tokens':>8}  {'v. calls':>8}  {'wall s':>7}",
        ]
        for rank, p in enumerate(self.picks, 1):
            label = p.search + (f" {p.params}" if p.params else "")
            if p.verifier not in ("none", ""):
                label += f" + {p.verifier}"
            lines.append(
                f"{rank:>4}  {p.row:>4}  {label:<36} {p.accuracy:>8.3f}  "
                f"{p.ci_low:.3f}..{p.ci_high:.3f}  {p.tokens_per_problem:>8.1f}  "
                f"{_cell(p.verifier_calls_per_problem, 2):>8}  {_cell(p.wall_s_per_problem, 2):>7}"
            )
        if len(self.picks) > 1:
            lines.append(
                f"paired    the best (row {self.best.row}) against each other frontier row, "
                "on the problems both graded (95% paired bootstrap CI):"
            )
            lines += [f"  {self.sentence(p)}" for p in self.picks[1:]]
        return "\n".join(lines)

    def sentence(self, p: Pick) -> str:
        """`row 3 is not significantly better than row 5 (diff +0.020, CI -0.040..+0.080), which
        costs 40% of its tokens`."""
        b = self.best
        share = _share(p.tokens_per_problem, b.tokens_per_problem)
        cost = f"row {p.row} costs {share} of row {b.row}'s tokens"
        if p.diff is None or p.diff_low is None or p.diff_high is None or math.isnan(p.diff):
            return f"row {b.row} against row {p.row}: not compared (runs not readable); {cost}"
        figures = (
            f"(diff {p.diff:+.3f}, CI {p.diff_low:+.3f}..{p.diff_high:+.3f}, {p.n_common} problems)"
        )
        if not p.significant:
            return f"row {b.row} is not significantly better than row {p.row} {figures}; {cost}"
        verdict = "better" if p.diff > 0 else "worse"
        return f"row {b.row} is significantly {verdict} than row {p.row} {figures}; {cost}"


def _share(part: float, whole: float) -> str:
    if not whole or math.isnan(part) or math.isnan(whole):
        return "?"
    return f"{100 * part / whole:.0f}%"


def _cell(value: float, decimals: int) -> str:
    return "" if math.isnan(value) else f"{value:.{decimals}f}"


def read_board(board_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The rows of a board folder's leaderboard.csv (text columns as text, `'`-guarded formula
    cells as written by `table.csv_safe` restored); AdvisorError when there is none."""
    path = Path(board_dir) / BOARD_CSV
    if not path.is_file():
        raise AdvisorError(
            f"no leaderboard at {path}: build one with `reason-leaderboard RUN_DIR --out "
            f"{board_dir}`"
        )
    try:
        table = pd.read_csv(path, dtype=dict.fromkeys(_TEXT, str), keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise AdvisorError(f"{path}: unreadable ({exc})") from exc
    missing = [
        c for c in ("row", "dataset", "model", "accuracy", "tokens_per_problem") if c not in table
    ]
    if missing:
        raise AdvisorError(f"{path}: not a leaderboard (no column {', '.join(missing)})")
    for column in _TEXT:
        if column in table:
            table[column] = table[column].map(_unguard)
    for column in ("accuracy", "ci_low", "ci_high", "tokens_per_problem"):
        table[column] = pd.to_numeric(table.get(column), errors="coerce")
    for column in ("verifier_calls_per_problem", "wall_s_per_problem"):
        table[column] = (
            pd.to_numeric(table[column], errors="coerce") if column in table else math.nan
        )
    table["incomplete"] = table["incomplete"].map(_truth) if "incomplete" in table else False
    return table


def _unguard(text: str) -> str:
    """A cell `csv_safe` prefixed with `'` (`'=x` -> `=x`)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_START) else text


def _truth(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _models(table: pd.DataFrame, dataset: str) -> list[str]:
    return sorted(set(table.loc[table["dataset"] == dataset, "model"]))


def _has(table: pd.DataFrame) -> str:
    """What the board holds: `arith (tiny, big); math500 (tiny)`."""
    if table.empty:
        return "no rows"
    return "; ".join(
        f"{d} ({', '.join(sorted(set(part['model'])))})"
        for d, part in table.groupby("dataset", sort=True)
    )


def advise(
    table: pd.DataFrame,
    groups: Mapping[str, Sequence[Run]],
    *,
    dataset: str,
    model: str,
    budget: float,
    verifier: str | None = None,
    board: str = "the board",
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = SEED,
) -> Advice:
    """The frontier within `budget` of one dataset and model (and verifier, when given), best
    first, the best compared with each other frontier row.

    `groups`: the runs of each row by config hash (a row without runs there is shown, not
    compared). Raises AdvisorError when the board has no row for them, only incomplete ones, or
    none within the budget (naming the cheapest)."""
    asked = f"dataset {dataset!r}, model {model!r}" + (
        f", verifier {verifier!r}" if verifier is not None else ""
    )
    rows = table[(table["dataset"] == dataset) & (table["model"] == model)]
    if verifier is not None:
        rows = rows[rows["verifier"] == verifier]
    if rows.empty:
        raise AdvisorError(f"{board} has no row for {asked}; it has: {_has(table)}")
    incomplete = rows["incomplete"].astype(bool)
    unmeasured = rows["accuracy"].isna() | rows["tokens_per_problem"].isna()
    left_out = [f"row {r} (incomplete)" for r in rows.loc[incomplete, "row"]]
    left_out += [
        f"row {r} (no accuracy or cost)" for r in rows.loc[unmeasured & ~incomplete, "row"]
    ]
    complete = rows[~incomplete & ~unmeasured]
    if complete.empty:
        raise AdvisorError(
            f"{board} has only incomplete rows for {asked} ({', '.join(left_out)}): finish "
            "their runs (rerun the same command to resume) and rebuild the board"
        )
    within = complete[complete["tokens_per_problem"] <= budget]
    if within.empty:
        cheapest = complete.sort_values(["tokens_per_problem", "row"]).iloc[0]
        raise AdvisorError(
            f"no row of {board} for {asked} is within {budget:g} tokens/problem: the cheapest, "
            f"row {cheapest['row']} ({cheapest['search']}), spends "
            f"{cheapest['tokens_per_problem']:.1f}; raise the budget to at least that"
        )
    front = within[pareto_mask(within["tokens_per_problem"], within["accuracy"])]
    # best first: the most accurate; among equals, the cheaper, then the lower row number
    front = front.sort_values(
        ["accuracy", "tokens_per_problem", "row"], ascending=[False, True, True], kind="stable"
    )
    advice = Advice(board, dataset, model, budget, [], len(within), left_out)
    best = front.iloc[0]
    for _, r in front.iterrows():
        pick = _pick(r)
        if r["row"] != best["row"]:
            pick = _compared(pick, table, groups, best, r, n_bootstrap, seed, advice)
        advice.picks.append(pick)
    return advice


def _pick(r: pd.Series) -> Pick:
    try:
        params = json.loads(r.get("search_params") or "{}")
    except ValueError:
        params = {}
    return Pick(
        row=int(r["row"]),
        dataset=str(r["dataset"]),
        model=str(r["model"]),
        search=str(r["search"]),
        params=str(r.get("params") or ""),
        search_params=params if isinstance(params, dict) else {},
        verifier=str(r.get("verifier") or "none"),
        accuracy=float(r["accuracy"]),
        ci_low=float(r.get("ci_low", math.nan)),
        ci_high=float(r.get("ci_high", math.nan)),
        tokens_per_problem=float(r["tokens_per_problem"]),
        verifier_calls_per_problem=float(r.get("verifier_calls_per_problem", math.nan)),
        wall_s_per_problem=float(r.get("wall_s_per_problem", math.nan)),
        config_hash=str(r.get("config_hash", "")),
    )


def _compared(
    pick: Pick,
    table: pd.DataFrame,
    groups: Mapping[str, Sequence[Run]],
    best: pd.Series,
    other: pd.Series,
    n_bootstrap: int,
    seed: int,
    advice: Advice,
) -> Pick:
    """`pick` with best - other on the problems both graded; unchanged when a row's runs are
    not in `groups` (moved or deleted since the board was built)."""
    missing = [int(r["row"]) for r in (best, other) if not groups.get(r["config_hash"])]
    if missing:
        advice.unreadable += [str(m) for m in missing if str(m) not in advice.unreadable]
        return pick
    c = compare_rows(
        table, groups, str(best["row"]), str(other["row"]), n_bootstrap=n_bootstrap, seed=seed
    )
    d = c.result.difference
    return replace(pick, diff=d.value, diff_low=d.low, diff_high=d.high, n_common=c.result.n)


def _row_runs(table: pd.DataFrame, rows: Sequence[int]) -> dict[str, list[Run]]:
    """The usable runs of the given rows, read from the board's `run_dirs`, by config hash."""
    groups: dict[str, list[Run]] = {}
    for _, r in table[table["row"].isin(list(rows))].iterrows():
        dirs = [d for d in str(r.get("run_dirs") or "").split() if d]
        if not dirs:
            continue
        runs, _ = read_runs(dirs)
        usable = [run for run in runs if run.usable]
        if usable:
            groups[str(r["config_hash"])] = usable
    return groups


def advise_board(
    board_dir: str | os.PathLike[str],
    *,
    dataset: str,
    budget: float,
    model: str | None = None,
    verifier: str | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = SEED,
) -> list[Advice]:
    """The advice for each model of `dataset` on the board (or `model` alone), read from the
    folder `reason-leaderboard` wrote. A model with nothing within the budget is left out when
    another has something (its refusal is raised when none has)."""
    if not isinstance(budget, int | float) or isinstance(budget, bool) or not budget > 0:
        raise AdvisorError(f"the budget must be a number of tokens > 0, got {budget!r}")
    board = str(board_dir)
    table = read_board(board_dir)
    models = [model] if model is not None else _models(table, dataset)
    if not models:
        raise AdvisorError(f"{board} has no row for dataset {dataset!r}; it has: {_has(table)}")
    out: list[Advice] = []
    refusals: list[AdvisorError] = []
    ask = functools.partial(
        advise,
        dataset=dataset,
        budget=budget,
        verifier=verifier,
        board=board,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )  # first the frontier, then (with its rows' runs read) the paired comparisons
    for name in models:
        try:
            first = ask(table, {}, model=name)
        except AdvisorError as exc:
            refusals.append(exc)
            continue
        groups = _row_runs(table, [p.row for p in first.picks])
        out.append(ask(table, groups, model=name))
    if not out:
        raise AdvisorError("\n".join(str(e) for e in refusals))
    return out


def picks_json(advice: Sequence[Advice]) -> list[dict[str, Any]]:
    """What `reason-advise --json` prints: every frontier row, model by model, best first."""
    return [p.as_json(best=i == 0) for a in advice for i, p in enumerate(a.picks)]
