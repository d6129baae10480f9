"""The frontier plot per dataset: accuracy against mean generated tokens per problem."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from evals.leaderboard.frontier import X, Y, pareto_mask, with_controllers  # noqa: E402

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def plot_name(dataset: str) -> str:
    """`frontier-<dataset>` with anything unsafe in a file name replaced by `_`."""
    return "frontier-" + (_UNSAFE.sub("_", dataset) or "_")


def plot_frontier(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write frontier-<dataset>.png and .svg for each dataset; returns the files written.

    One line per controller through its budgets, 95% interval bars, the Pareto frontier as
    ringed points joined by a dashed step line.
    """
    rows = with_controllers(table)
    written = []
    for dataset, part in rows.groupby("dataset", sort=True):
        fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
        for name, line in part.sort_values(X).groupby("controller", sort=True):
            ax.errorbar(
                line[X],
                line[Y],
                yerr=[line[Y] - line["ci_low"], line["ci_high"] - line[Y]],
                marker="o",
                capsize=3,
                label=name,
            )
        front = part[pareto_mask(part[X], part[Y])].sort_values(X)
        ax.step(front[X], front[Y], where="post", color="black", linestyle="--", linewidth=0.8)
        ax.scatter(
            front[X],
            front[Y],
            s=140,
            facecolors="none",
            edgecolors="black",
            zorder=3,
            label="Pareto frontier",
        )
        ax.set_xscale(
            "log" if part[X].min() > 0 and part[X].max() / part[X].min() > 20 else "linear"
        )
        ax.set_xlabel("mean generated tokens per problem")
        ax.set_ylabel("accuracy (95% bootstrap CI)")
        ax.set_title(f"{dataset}: accuracy against compute")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        for suffix in (".png", ".svg"):
            path = out_dir / (plot_name(str(dataset)) + suffix)
            # no date in the SVG: the same runs give the same file
            fig.savefig(path, dpi=120, metadata={"Date": None} if suffix == ".svg" else None)
            written.append(path)
        plt.close(fig)
    return written
