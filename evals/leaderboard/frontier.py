"""Accuracy against compute: controllers, the Pareto frontier, accuracy at equal compute.

Compute is mean generated tokens per problem (the leaderboard's `tokens_per_problem`). A
controller is one search with one verifier (and model); its rows at different budgets or sizes
(`search.n=1,4,8`) are the points of its line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from evals.leaderboard.table import markdown_text

X = "tokens_per_problem"
Y = "accuracy"


def controller(row: pd.Series, with_model: bool = False) -> str:
    """A controller's label: `best_of_n`, `beam + prm`, with `model: ` when models differ."""
    label = str(row["search"])
    if row["verifier"] not in ("none", "", None):
        label += f" + {row['verifier']}"
    return f"{row['model']}: {label}" if with_model else label


def with_controllers(table: pd.DataFrame) -> pd.DataFrame:
    """The complete rows that have both a cost and an accuracy, with a `controller` column.

    Incomplete rows are left out: their accuracy is on a subset of the problems, so a point
    of theirs would not be comparable with the others (they stay in the table, flagged).
    """
    rows = table[table[X].notna() & table[Y].notna() & ~table["incomplete"].astype(bool)].copy()
    several = rows.groupby("dataset")["model"].transform("nunique") > 1
    rows["controller"] = [
        controller(row, bool(many)) for (_, row), many in zip(rows.iterrows(), several, strict=True)
    ]
    return rows


def pareto_mask(x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """True for the points no other point dominates: none costs no more and scores at least as
    much, with one of the two strictly better. (Ties: both kept.)"""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    no_worse = (xs[None, :] <= xs[:, None]) & (ys[None, :] >= ys[:, None])
    better = (xs[None, :] < xs[:, None]) | (ys[None, :] > ys[:, None])
    return ~(no_worse & better).any(axis=1)


def interpolate(xs: Sequence[float], ys: Sequence[float], at: float) -> tuple[float, bool]:
    """(accuracy at compute `at`, whether it is interpolated): measured points are exact, a point
    between two measured ones is on the line between them, outside them it is NaN (never
    extrapolated). Several points at one x are averaged."""
    points = pd.Series(list(ys), index=list(xs), dtype=float).groupby(level=0).mean().sort_index()
    if at in points.index:
        return float(points[at]), False
    if points.empty or not points.index.min() <= at <= points.index.max():
        return math.nan, False
    return float(np.interp(at, points.index.to_numpy(), points.to_numpy())), True


def equal_compute(table: pd.DataFrame, budgets: Sequence[float] | None = None) -> pd.DataFrame:
    """Each controller's accuracy at shared compute, per dataset: long format with columns
    dataset, tokens_per_problem, controller, accuracy, interpolated.

    The shared budgets are `budgets`, or every compute any controller of the dataset measured.
    """
    rows = with_controllers(table)
    out = []
    for dataset, part in rows.groupby("dataset", sort=True):
        grid = sorted(set(budgets) if budgets is not None else set(part[X].round(1)))
        for name, line in part.groupby("controller", sort=True):
            xs, ys = line[X].round(1).tolist(), line[Y].tolist()
            for at in grid:
                value, interpolated = interpolate(xs, ys, at)
                out.append(
                    {
                        "dataset": dataset,
                        X: at,
                        "controller": name,
                        "accuracy": value,
                        "interpolated": interpolated,
                    }
                )
    return pd.DataFrame(out, columns=["dataset", X, "controller", "accuracy", "interpolated"])


def equal_compute_markdown(long: pd.DataFrame) -> str:
    """One wide table per dataset: a row per shared budget, a column per controller; `*` marks
    an interpolated value, a blank one outside the controller's measured range."""
    parts = [
        "# Accuracy at equal compute\n",
        "Each controller's accuracy at the compute (mean generated tokens per problem) that "
        "any controller of the dataset measured. `*`: interpolated linearly between the "
        "controller's two nearest measured points; blank: outside its measured range (never "
        "extrapolated).\n",
    ]
    for dataset, part in long.groupby("dataset", sort=True):
        cells = part.assign(
            cell=[
                "" if math.isnan(a) else f"{a:.3f}" + ("*" if i else "")
                for a, i in zip(part["accuracy"], part["interpolated"], strict=True)
            ]
        ).pivot(index=X, columns="controller", values="cell")
        names = list(cells.columns)
        lines = [
            f"## {markdown_text(str(dataset))}\n",
            "| tokens per problem | " + " | ".join(markdown_text(str(n)) for n in names) + " |",
            "| --- | " + " | ".join("---" for _ in names) + " |",
        ]
        lines += [
            f"| {at:g} | " + " | ".join(str(row[n]) for n in names) + " |"
            for at, row in cells.iterrows()
        ]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)
