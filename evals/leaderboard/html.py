"""leaderboard.html: one static, offline file (no network, no CDN) with the sortable,
filterable table and the per-problem matrix linking each result to its trace."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from evals.leaderboard.runs import Run
from evals.leaderboard.table import COLUMNS, SHOWN, format_cell
from evals.rundir import TRACES, trace_filename
from evals.viewer.page import PROBLEMS, escape

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 2em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; }
table.board th { cursor: pointer; }
table.board th.asc::after { content: " \\25B2"; } table.board th.desc::after { content: " \\25BC"; }
td.text { text-align: left; } tr.incomplete td { background: #fff6dc; }
td.yes a { color: #18794e; } td.no a { color: #c4302b; } td a { text-decoration: none; }
#filter { width: 24em; padding: 4px; }
"""

# Sorting: click a header (again to reverse); numbers compare as numbers, blanks last.
# Filtering: rows that do not contain every word of the box are hidden.
_SCRIPT = """
document.querySelectorAll("table.board").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var body = table.tBodies[0], rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent.trim(), y = b.cells[col].textContent.trim();
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var nx = Number(x), ny = Number(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
document.getElementById("filter").addEventListener("input", function (e) {
  var words = e.target.value.toLowerCase().split(/\\s+/).filter(Boolean);
  document.querySelectorAll("table.board tbody tr").forEach(function (r) {
    var text = r.textContent.toLowerCase();
    r.style.display = words.every(function (w) { return text.includes(w); }) ? "" : "none";
  });
});
"""

_TEXT_COLUMNS = {"dataset", "model", "search", "params", "verifier", "budget", "grader"}


def _board(table: pd.DataFrame) -> str:
    head = "".join(
        f'<th data-column="{escape(c)}" title="{escape(COLUMNS[c])}">{escape(c)}</th>'
        for c in SHOWN
    )
    body = []
    for _, row in table.iterrows():
        cells = "".join(
            f'<td class="text">{escape(format_cell(row[c], c))}</td>'
            if c in _TEXT_COLUMNS
            else f"<td>{escape(format_cell(row[c], c))}</td>"
            for c in SHOWN
        )
        cls = ' class="incomplete"' if row["incomplete"] else ""
        body.append(f'<tr data-row="{escape(row["row"])}"{cls}>{cells}</tr>')
    return (
        f'<table class="board" id="leaderboard"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def relative_href(target: Path, base_dir: Path) -> str:
    """An href from a page in `base_dir` to `target`: a relative path, percent-encoded, so that
    no folder name becomes a scheme (`javascript:`), a query or a fragment."""
    rel = Path(os.path.relpath(target.resolve(), base_dir.resolve())).as_posix()
    return quote(rel, safe="/")


def trace_link(run: Run, problem_id: str, out_dir: Path, viewer: Path | None = None) -> str:
    """One result's page in the run's trace viewer (`viewer`), else its trace JSON; relative to
    the page, so the page and what it links can move together (`relative_href`)."""
    name = trace_filename(problem_id)
    if viewer is not None:
        target = viewer / PROBLEMS / (Path(name).stem + ".html")
    else:
        target = run.path / TRACES / name
    return relative_href(target, out_dir)


def _link_folder(run: Run, out_dir: Path, viewer: Path | None) -> tuple[str, bool]:
    """The href of the folder a run's marks link into (`trace_link`), and whether it is the
    trace viewer's."""
    if viewer is not None:
        return relative_href(viewer / PROBLEMS, out_dir), True
    return relative_href(run.path / TRACES, out_dir), False


def _matrix(
    table: pd.DataFrame,
    groups: Mapping[str, Sequence[Run]],
    dataset: str,
    out_dir: Path,
    viewers: Mapping[str, Path],
) -> Iterator[str]:
    """The dataset's matrix, a row at a time (a run may hold many problems)."""
    rows = table[table["dataset"] == dataset]
    ids = sorted({r["id"] for h in rows["config_hash"] for run in groups[h] for r in run.records})
    head = "<th>problem</th>" + "".join(
        f'<th title="{escape(row["search"])} {escape(row["params"])} | {escape(row["verifier"])} | '
        f'{escape(row["model"])} | {escape(row["budget"])}">{row["row"]}</th>'
        for _, row in rows.iterrows()
    )
    by_id = {
        str(run.path): {r["id"]: r for r in run.records}
        for members in groups.values()
        for run in members
    }
    # the folder each run's links point into, once per run (not per problem)
    folders = {
        str(run.path): _link_folder(run, out_dir, viewers.get(str(run.path)))
        for h in rows["config_hash"]
        for run in groups[h]
    }
    yield (
        f"<h3>{escape(dataset)}</h3>"
        f'<table class="matrix" data-dataset="{escape(dataset)}"><thead><tr>{head}</tr></thead>'
        "<tbody>"
    )
    for pid in ids:
        cells = [f'<td class="text">{escape(pid)}</td>']
        for h in rows["config_hash"]:
            links, solved = [], []
            for run in groups[h]:
                record = by_id[str(run.path)].get(pid)
                if record is None:
                    continue
                verdict = record.get("correct")
                mark = "\u2713" if verdict else ("?" if verdict is None else "\u2717")
                solved.append(bool(verdict))
                folder, viewer = folders[str(run.path)]
                name = trace_filename(pid)
                name = Path(name).stem + ".html" if viewer else name
                href = escape(f"{folder}/{quote(name, safe='')}")
                links.append(f'<a href="{href}" title="seed {escape(run.seed)}">{mark}</a>')
            share = sum(solved) / len(solved) if solved else math.nan
            cls = "" if not solved else (' class="yes"' if share >= 0.5 else ' class="no"')
            cells.append(f"<td{cls}>{' '.join(links)}</td>")
        yield f"<tr>{''.join(cells)}</tr>"
    yield "</tbody></table>"


def write_html(
    table: pd.DataFrame,
    groups: Mapping[str, Sequence[Run]],
    path: Path,
    problems: Sequence[str] = (),
    viewers: Mapping[str, Path] | None = None,
) -> None:
    """The page: the leaderboard, then per dataset which row solved which problem (✓ right,
    ✗ wrong, ? ungraded; one mark per seed, each a link to that result's trace)."""
    datasets = sorted(set(table["dataset"]))
    errors = (
        "<h2>Problems reading the runs</h2><ul>"
        + "".join(f"<li>{escape(p)}</li>" for p in problems)
        + "</ul>"
        if problems
        else ""
    )
    head = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Leaderboard</title>
<style>{_STYLE}</style></head><body>
<h1>Leaderboard</h1>
<p>Accuracy with its 95% bootstrap interval over problems (and seeds); costs per problem.
Click a header to sort; type to filter. Highlighted rows are incomplete.</p>
<input id="filter" type="search" placeholder="filter rows, e.g. best_of_n arith">
{_board(table)}
<h2>Per problem</h2>
<p>Columns are leaderboard rows; one mark per seed, linking to its search tree in the trace
viewer:
\u2713 right, \u2717 wrong, ? not graded.</p>
"""
    # written as it is made (matrices can be long); a lone surrogate from a record is replaced
    with path.open("w", encoding="utf-8", errors="replace") as f:
        f.write(head)
        for dataset in datasets:
            f.writelines(_matrix(table, groups, dataset, path.parent, viewers or {}))
        f.write(f"{errors}\n<script>{_SCRIPT}</script>\n</body></html>\n")
