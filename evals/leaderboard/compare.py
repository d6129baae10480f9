"""The paired comparison of two leaderboard rows on the problems both graded."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from evals.leaderboard.runs import Run
from evals.leaderboard.stats import N_BOOTSTRAP, SEED, PairedDifference, paired_bootstrap
from evals.leaderboard.table import correct_matrix


@dataclass(frozen=True)
class Comparison:
    """Row A against row B: accuracy difference A - B with its paired bootstrap interval."""

    a: pd.Series  # the two leaderboard rows
    b: pd.Series
    result: PairedDifference
    dropped: list[str]  # common ids whose question or gold answer differ: not compared

    def text(self) -> str:
        """Three lines: the difference and its interval, then who solved what alone."""
        r, d = self.result, self.result.difference
        lines = [
            f"{_name(self.a)} - {_name(self.b)} on {r.n} common problems: "
            f"{d.value:+.3f}  (95% paired bootstrap CI {d.low:+.3f} .. {d.high:+.3f}); "
            f"accuracy {r.accuracy_a:.3f} vs {r.accuracy_b:.3f}",
            f"only row {self.a['row']} solved ({len(r.only_a)}): {', '.join(r.only_a) or '-'}",
            f"only row {self.b['row']} solved ({len(r.only_b)}): {', '.join(r.only_b) or '-'}",
        ]
        if self.dropped:
            dropped = ", ".join(self.dropped)
            lines.append(f"left out ({len(self.dropped)}, question or gold differ): {dropped}")
        return "\n".join(lines)


def _name(row: pd.Series) -> str:
    """`row 3 (best_of_n n=4)`; an incomplete row says so, with how much of it ran."""
    params = f" {row['params']}" if row["params"] else ""
    partial = f"; incomplete, done {row['done']}" if row.get("incomplete") else ""
    return f"row {row['row']} ({row['search']}{params}{partial})"


def find_row(table: pd.DataFrame, key: str) -> pd.Series:
    """A row by its number (`3`) or a unique prefix of its config hash; ValueError otherwise."""
    key = key.strip()
    if key.isdigit():
        hit = table[table["row"] == int(key)]
    else:
        hit = table[table["config_hash"].str.startswith(key.lower())] if key else table.iloc[:0]
    if len(hit) != 1:
        what = "no row" if hit.empty else f"{len(hit)} rows"
        raise ValueError(
            f"{what} matches {key!r}: give a row number (1-{len(table)}) or a config hash prefix"
        )
    return hit.iloc[0]


def _scores(runs: Sequence[Run]) -> tuple[pd.Series, dict[str, str | None]]:
    """Per problem, the fraction of seeds that solved it; and each id's problem hash."""
    hashes = {r["id"]: r.get("problem_hash") for run in runs for r in run.records}
    return correct_matrix(runs).mean(axis=0, skipna=True), hashes


def compare_rows(
    table: pd.DataFrame,
    groups: Mapping[str, Sequence[Run]],
    key_a: str,
    key_b: str,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = SEED,
) -> Comparison:
    """Paired bootstrap of row A minus row B over the problems both graded (same id and, when
    recorded, the same question and gold answer)."""
    a, b = find_row(table, key_a), find_row(table, key_b)
    scores_a, hashes_a = _scores(groups[a["config_hash"]])
    scores_b, hashes_b = _scores(groups[b["config_hash"]])
    dropped = sorted(
        i
        for i in set(hashes_a) & set(hashes_b)
        if None not in (hashes_a[i], hashes_b[i]) and hashes_a[i] != hashes_b[i]
    )
    scores_a = scores_a.drop(index=dropped, errors="ignore")
    result = paired_bootstrap(scores_a, scores_b, n_bootstrap, seed)
    return Comparison(a, b, result, dropped)


def write_comparison(comparison: Comparison, path: Path) -> None:
    text = comparison.text()
    # a fence longer than any run of backticks in the text (problem ids, names): none closes it
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall("`+", text)), default=0))
    path.write_text(
        "# Paired comparison\n\n"
        "Accuracy difference on the problems both rows graded, with a 95% paired bootstrap "
        f"interval (the same problems drawn for both rows).\n\n{fence}\n" + text + f"\n{fence}\n",
        encoding="utf-8",
        errors="replace",
    )
