"""The leaderboard's rows: one per configuration, its seeds pooled, and the md/csv writers.

A row is one (dataset, model, search and its params, verifier, budget, grader) configuration:
its runs differ only by seed (`Run.config_hash` leaves the seed out), and its interval
resamples both problems and seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evals.leaderboard.runs import Run
from evals.leaderboard.stats import N_BOOTSTRAP, SEED, bootstrap_accuracy

# (column, what it means): the order of leaderboard.csv; the docs list the same.
COLUMNS = {
    "row": "the row's number (for --compare)",
    "dataset": "dataset name",
    "model": "model name",
    "search": "controller config name",
    "params": "its params that differ between rows of the same controller",
    "verifier": "verifier name",
    "budget": "the per-problem budget limits",
    "accuracy": "correct / graded, over all seeds",
    "ci_low": "95% percentile bootstrap interval, low",
    "ci_high": "95% percentile bootstrap interval, high",
    "n": "graded problem results (over all seeds)",
    "seeds": "how many runs (seeds) the row pools",
    "tokens_per_problem": "mean generated tokens per problem",
    "verifier_calls_per_problem": "mean verifier calls per problem",
    "critical_path_tokens_per_problem": "mean critical-path tokens, where recorded",
    "cache_hit_rate": "cached prompt tokens / prompt tokens",
    "wall_s_per_problem": "mean wall seconds per problem",
    "ungraded": "results without a verdict (errors, grading timeouts)",
    "grader": "grader name and version",
    "config_hash": "hash of the run config without the seed",
    "incomplete": "a run of the row has fewer results than its dataset, or no summary",
    "done": "selected problems with a result / selected, over the row's runs (`?`: unknown)",
    "search_params": "all the controller's params (JSON)",
    "run_dirs": "the row's run directories",
}
SHOWN = [c for c in COLUMNS if c not in ("search_params", "run_dirs")]


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Usable runs by configuration (`config_hash`), seeds in order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.usable:
            groups.setdefault(run.config_hash, []).append(run)
    for members in groups.values():
        members.sort(key=lambda r: (str(r.seed), str(r.path)))
    return groups


def correct_matrix(runs: Sequence[Run]) -> pd.DataFrame:
    """Runs x problem ids: 1 correct, 0 wrong, NaN not graded or not run. Problems in the order
    they first appear; built as one float array (a frame from nested dicts took several times
    the records' memory)."""
    ids: dict[str, int] = {}
    for run in runs:
        for r in run.records:
            ids.setdefault(r["id"], len(ids))
    matrix = np.full((len(runs), len(ids)), np.nan)
    for i, run in enumerate(runs):
        for r in run.records:
            if r.get("correct") is not None:
                matrix[i, ids[r["id"]]] = float(bool(r["correct"]))
    return pd.DataFrame(matrix, index=[str(run.path) for run in runs], columns=list(ids))


def _ledger(record: dict[str, Any], key: str) -> float | None:
    """A number of the record's ledger (its `costs` as the reader keeps them, else a ledger
    object); None when absent or not a number (or no ledger)."""
    costs = record.get("costs")
    if costs is not None:
        value = getattr(costs, key, None)
    else:
        ledger = record.get("ledger")
        value = ledger.get(key) if isinstance(ledger, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _per_problem(records: list[dict[str, Any]], key: str) -> float:
    values = [v for v in (_ledger(r, key) for r in records) if v is not None]
    return float(np.mean(values)) if values else math.nan


def _cache_hit_rate(records: list[dict[str, Any]]) -> float:
    prompt = sum(_ledger(r, "prompt_tokens") or 0 for r in records)
    cached = sum(_ledger(r, "cached_prompt_tokens") or 0 for r in records)
    return cached / prompt if prompt else math.nan


def _done(members: Sequence[Run]) -> str:
    """`k/N` summed over the row's runs: how many of the selected problems have a result; N is
    `?` when a run (killed before its summary, written before run.json held the selection)
    does not say how many it selected."""
    pairs = [run.done for run in members]
    done = sum(k for k, _ in pairs)
    known = [n for _, n in pairs if n is not None]
    return f"{done}/{sum(known)}" if len(known) == len(pairs) else f"{done}/?"


def _row(members: list[Run], n_bootstrap: int, seed: int) -> dict[str, Any]:
    first = members[0]
    records = [r for run in members for r in run.records]
    matrix = correct_matrix(members)
    estimate = bootstrap_accuracy(matrix, n_bootstrap, seed)
    return {
        "dataset": first.dataset,
        "model": first.model,
        "search": first.search,
        "verifier": first.verifier,
        "budget": first.budget,
        "accuracy": estimate.value,
        "ci_low": estimate.low,
        "ci_high": estimate.high,
        "n": int(matrix.notna().to_numpy().sum()),
        "seeds": len(members),
        "tokens_per_problem": _per_problem(records, "generated_tokens"),
        "verifier_calls_per_problem": _per_problem(records, "verifier_calls"),
        "critical_path_tokens_per_problem": _per_problem(records, "critical_path_tokens"),
        "cache_hit_rate": _cache_hit_rate(records),
        "wall_s_per_problem": _per_problem(records, "wall_s"),
        "ungraded": sum(1 for r in records if r.get("correct") is None),
        "grader": first.grader,
        "config_hash": first.config_hash,
        "incomplete": any(run.incomplete for run in members),
        "done": _done(members),
        "search_params": json.dumps(first.search_params, sort_keys=True, default=str),
        "run_dirs": " ".join(str(run.path) for run in members),
    }


def _params(table: pd.DataFrame) -> pd.Series:
    """Per row, the params that tell it apart from the other rows of its controller."""
    out = pd.Series("", index=table.index, dtype=object)
    keys = ["dataset", "model", "search", "verifier"]
    for _, group in table.groupby(keys, sort=False):
        params = {i: json.loads(p) for i, p in group["search_params"].items()}
        varying = sorted(
            k
            for k in set().union(*params.values())
            if len({json.dumps(p.get(k), default=str) for p in params.values()}) > 1
        )
        for i, p in params.items():
            out[i] = ", ".join(f"{k}={p.get(k)}" for k in varying)
    return out


def build_table(
    groups: dict[str, list[Run]], n_bootstrap: int = N_BOOTSTRAP, seed: int = SEED
) -> pd.DataFrame:
    """One row per configuration, sorted by dataset, model, controller, then tokens; `row`
    numbers them from 1 in that order."""
    if not groups:
        return pd.DataFrame(columns=list(COLUMNS))
    table = pd.DataFrame([_row(m, n_bootstrap, seed) for m in groups.values()])
    table["params"] = _params(table)
    table = table.sort_values(
        ["dataset", "model", "search", "verifier", "tokens_per_problem", "params"],
        kind="stable",
    ).reset_index(drop=True)
    table["row"] = range(1, len(table) + 1)
    return table[list(COLUMNS)]


# decimals of the cost columns; every other float (accuracy, interval, hit rate) gets 3
DECIMALS = {
    "tokens_per_problem": 1,
    "verifier_calls_per_problem": 2,
    "critical_path_tokens_per_problem": 1,
    "wall_s_per_problem": 2,
}


def format_cell(value: Any, column: str = "") -> str:
    """A table cell: floats rounded (DECIMALS, else 3), NaN and False blank, `|` escaped."""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else f"{value:.{DECIMALS.get(column, 3)}f}"
    return str(value).replace("|", "\\|")


# Markdown: what a name from a run directory must not become (raw HTML, a link, an image, a
# broken row); each is shown as the character it is.
_MD_ESCAPES = {
    "\\": "\\\\",
    "|": "\\|",
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "[": "\\[",
    "]": "\\]",
    "`": "\\`",
    "\n": " ",
    "\r": " ",
}


def markdown_text(text: str) -> str:
    """`text` as inert Markdown inside a table cell or a heading: no raw HTML (`<`, `&`), no
    link or image (`[`), no code span, no line break, no cell break (`|`)."""
    return "".join(_MD_ESCAPES.get(ch, ch) for ch in text)


# A spreadsheet takes a cell that starts with one of these as a formula (`=HYPERLINK(...)`,
# `@SUM(...)`, `+cmd|...`); such a text cell is written with a leading `'`, which makes it
# text. A number (`-3`, `+2.5`) stays as it is.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_safe(value: Any) -> Any:
    """A CSV cell that no spreadsheet evaluates (OWASP's CSV injection advice)."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def write_safe_csv(frame: pd.DataFrame, path: Path) -> None:
    """`frame` as CSV with every text cell (and header) made safe by `csv_safe`."""
    safe = frame.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):  # object or string dtype
            safe[column] = safe[column].map(csv_safe)
    safe.columns = [csv_safe(str(c)) for c in safe.columns]
    safe.to_csv(path, index=False, errors="replace")


def markdown_table(table: pd.DataFrame, columns: Sequence[str]) -> str:
    """A GitHub table (pandas' to_markdown needs `tabulate`, which the toolkit does not ship)."""
    lines = [
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    lines += [
        "| " + " | ".join(_markdown_cell(row[c], c) for c in columns) + " |"
        for _, row in table.iterrows()
    ]
    return "\n".join(lines) + "\n"


def _markdown_cell(value: Any, column: str) -> str:
    if isinstance(value, str):
        return markdown_text(value)
    return markdown_text(format_cell(value, column).replace("\\|", "|"))


def write_markdown(table: pd.DataFrame, path: Path) -> None:
    text = (
        "# Leaderboard\n\n"
        "Accuracy with its 95% bootstrap interval over problems (and seeds); costs are per "
        "problem. `incomplete`: a run has fewer results than its dataset, or no summary; "
        "`done`: how many of the selected problems have a result (k/N).\n\n"
        + markdown_table(table, SHOWN)
    )
    path.write_text(text, encoding="utf-8", errors="replace")


def write_csv(table: pd.DataFrame, path: Path) -> None:
    write_safe_csv(table, path)
