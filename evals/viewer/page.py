"""The trace viewer: static, offline HTML pages that draw each problem's search tree.

`write_viewer(run_dir)` reads `<run>/traces/*.json` and writes `<run>/viewer/index.html` (the
problems, right or wrong) and one page per problem under `viewer/problems/`. A problem page is
self-contained: the trace's tree (with node positions computed here by networkx), its chains and
its events are embedded as JSON, and `static/viewer.js` and `static/viewer.css` are inlined, so
the page opens from disk with no network. docs/trace-viewer.md describes it.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import networkx as nx

from evals.rundir import TRACES, read_json
from reasoning.tree import ROOT, NodeStatus

VIEWER = "viewer"
PROBLEMS = "problems"
INDEX = "index.html"
COL_W = 170  # pixels between neighbouring nodes of one layer
ROW_H = 90  # pixels between layers
MARGIN = 90  # room for the half of a label left of the first node

# What each fate means; the colours are in static/viewer.css (`.st-<status>`).
STATUS_MEANING: dict[str, str] = {
    NodeStatus.ROOT: "the question",
    NodeStatus.EXPANDED: "generated, still open",
    NodeStatus.FINISHED: "a complete solution",
    NodeStatus.PRUNED: "dropped by the search (lost a selection, duplicate, cut by budget)",
    NodeStatus.SELECTED: "kept by a selection, or the final answer's chain",
    NodeStatus.RESAMPLED: "drawn by particle resampling",
    NodeStatus.LOOKAHEAD: "a rollout used only to score a candidate",
    NodeStatus.TRIMMED: "stopped early by a trimming rule",
    NodeStatus.FORKED: "spawned parallel threads",
    NodeStatus.JOINED: "merges several threads",
}


# --- reading ------------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """The value with NaN and infinities as strings: browsers' JSON.parse rejects them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def check_trace(trace: Mapping[str, Any]) -> None:
    """ValueError naming the first part of a trace the pages cannot draw (`tree.nodes[3]: no
    id`); a trace from a shared run directory is data, and one bad trace is that trace's
    error, never the viewer's."""
    for key in ("id", "selected", "question", "gold", "prediction", "error", "error_stage"):
        value = trace.get(key)
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValueError(f"{key} is {_a(value)}, not text")
    tree = trace.get("tree")
    if tree is not None and not isinstance(tree, Mapping):
        raise ValueError(f"tree is {_a(tree)}, not an object")
    tree = tree or {}
    for key, needs in (("nodes", ("id",)), ("edges", ("source", "target"))):
        items = tree.get(key) if key == "nodes" else tree.get("edges", tree.get("links"))
        if items is None:
            continue
        if not isinstance(items, list):
            raise ValueError(f"tree.{key} is {_a(items)}, not a list")
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValueError(f"tree.{key}[{i}] is {_a(item)}, not an object")
            for need in needs:
                if item.get(need) is None:
                    raise ValueError(f"tree.{key}[{i}] has no {need}")
    for key in ("chains",):
        items = trace.get(key)
        if items is not None and (
            not isinstance(items, list) or not all(isinstance(c, Mapping) for c in items)
        ):
            raise ValueError(f"{key} is not a list of objects")
    details = trace.get("details")
    if details is not None and not isinstance(details, Mapping):
        raise ValueError(f"details is {_a(details)}, not an object")
    events = (details or {}).get("events")
    if events is not None and (
        not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events)
    ):
        raise ValueError("details.events is not a list of objects")
    ledger = trace.get("ledger")
    if ledger is not None and not isinstance(ledger, Mapping):
        raise ValueError(f"ledger is {_a(ledger)}, not an object")


def _a(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _edges(tree: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Parent -> child pairs, in the order they were added (networkx calls them edges or links)."""
    raw = tree.get("edges", tree.get("links")) or []
    return [(str(e["source"]), str(e["target"])) for e in raw]


def tree_graph(trace: Mapping[str, Any]) -> nx.DiGraph:
    """The trace's search tree as a DiGraph (node ids as strings); empty when none was recorded."""
    graph = nx.DiGraph()
    tree = trace.get("tree") or {}
    for node in tree.get("nodes") or []:
        graph.add_node(str(node["id"]), **{k: v for k, v in node.items() if k != "id"})
    for source, target in _edges(tree):
        graph.add_edge(source, target)  # an edge to an unlisted node still shows that node
    return graph


def layers(graph: nx.DiGraph) -> list[list[str]]:
    """Nodes by breadth-first distance from the root (and from any other parentless node).

    Children follow their parents' order within a layer, so a tree draws without crossings; a
    node no source reaches (a cycle, which a search tree never has) gets a last layer of its own.
    """
    if not len(graph):
        return []
    sources = [ROOT] if ROOT in graph else []
    sources += [n for n in graph if graph.in_degree(n) == 0 and n != ROOT]
    found = [list(layer) for layer in nx.bfs_layers(graph, sources)] if sources else []
    seen = {n for layer in found for n in layer}
    rest = [n for n in graph if n not in seen]
    return found + ([rest] if rest else [])


def positions(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Pixel positions, top-down by layer, from networkx's multipartite layout."""
    by_layer = layers(graph)
    if not by_layer:
        return {}
    pos = nx.multipartite_layout(graph, subset_key=dict(enumerate(by_layer)), align="horizontal")
    # The layout puts layers and the nodes in a layer one unit apart, then scales every axis by
    # one factor: recover the unit to map it onto pixels.
    ys = sorted({float(p[1]) for p in pos.values()})
    xs = sorted({float(p[0]) for p in pos.values()})
    if len(ys) > 1:
        unit = (ys[-1] - ys[0]) / (len(ys) - 1)
    elif len(xs) > 1:
        unit = min(b - a for a, b in zip(xs, xs[1:], strict=False))
    else:
        unit = 1.0
    x0, y0 = xs[0], ys[0]
    return {
        n: (
            round(MARGIN + (float(p[0]) - x0) / unit * COL_W, 1),
            round(MARGIN + (float(p[1]) - y0) / unit * ROW_H, 1),
        )
        for n, p in pos.items()
    }


def view_data(trace: Mapping[str, Any]) -> dict[str, Any]:
    """What a problem page's script draws: nodes with positions and parents, and the chains."""
    graph = tree_graph(trace)
    pos = positions(graph)
    depth = {n: i for i, layer in enumerate(layers(graph)) for n in layer}
    parents: dict[str, list[str]] = {n: [] for n in graph}
    for source, target in _edges(trace.get("tree") or {}):
        if source not in parents[target]:
            parents[target].append(source)  # the order they were added: the first parent first
    nodes = [
        {
            "id": n,
            "x": pos[n][0],
            "y": pos[n][1],
            "layer": depth[n],
            "parents": parents[n],
            "data": dict(graph.nodes[n]),
        }
        for n in graph
    ]
    width = max((x for x, _ in pos.values()), default=0) + MARGIN + COL_W / 2
    height = max((y for _, y in pos.values()), default=0) + MARGIN
    return _finite(
        {
            "id": trace.get("id"),
            "root": ROOT,
            "selected": trace.get("selected"),
            "nodes": nodes,
            "width": round(width, 1),
            "height": round(height, 1),
            "chains": trace.get("chains") or [],
            "statuses": list(STATUS_MEANING),
        }
    )


# --- writing ------------------------------------------------------------------------------------


def _static(name: str) -> str:
    text = (resources.files(__package__) / "static" / name).read_text(encoding="utf-8")
    if ("</" in text and name.endswith(".js")) or "</style" in text:
        raise ValueError(f"static/{name} must not contain a closing tag (it is inlined)")
    return text


def _json_script(element_id: str, data: Any) -> str:
    """JSON inside a <script> element: `<`, `>` and `&` escaped, so no text can close it."""
    text = json.dumps(data, ensure_ascii=True, default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def escape(value: Any) -> str:
    """`value` as HTML text, safe inside quoted attributes too; None is empty. The leaderboard
    page uses it as well."""
    return html.escape("" if value is None else str(value))


def _verdict(correct: Any, error: Any = None) -> tuple[str, str]:
    """A CSS class and a label for a problem's grade."""
    if error:
        return "error", "error"
    if correct is True:
        return "right", "✓ correct"
    if correct is False:
        return "wrong", "✗ incorrect"
    return "ungraded", "not graded"


def _page(title: str, body: str, script: str = "") -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>\n{_static('viewer.css')}</style>\n</head>\n"
        f"<body>\n{body}\n{script}</body>\n</html>\n"
    )


def legend() -> str:
    """The legend: a swatch per status, then what the shapes and outlines mean."""
    rows = [
        f'<li><svg class="swatch" viewBox="0 0 20 20"><circle class="shape st-{s}" cx="10"'
        f' cy="10" r="7"/></svg><b>{escape(s)}</b> {escape(meaning)}</li>'
        for s, meaning in STATUS_MEANING.items()
    ]
    shapes = [
        '<li><svg class="swatch" viewBox="0 0 20 20"><circle class="shape plain" cx="10" cy="10"'
        ' r="7"/></svg>circle: a partial solution</li>',
        '<li><svg class="swatch" viewBox="0 0 20 20"><rect class="shape plain" x="3" y="3"'
        ' width="14" height="14"/></svg>square: a finished solution</li>',
        '<li><svg class="swatch" viewBox="0 0 20 20"><circle class="ring" cx="10" cy="10" r="8"/>'
        '<circle class="shape plain" cx="10" cy="10" r="5"/></svg>ring: the chain whose answer'
        " was selected</li>",
        '<li><svg class="swatch" viewBox="0 0 20 20"><circle class="shape plain budget" cx="10"'
        ' cy="10" r="7"/></svg>dashed outline: cut by the budget</li>',
        '<li><svg class="swatch" viewBox="0 0 20 20"><path class="edge extra" d="M2 10 H18"/>'
        "</svg>dashed edge: a further parent of a join</li>",
    ]
    return (
        '<section class="legend" id="legend"><h2>Legend</h2><ul>'
        + "".join(rows)
        + "</ul><ul>"
        + "".join(shapes)
        + "</ul></section>"
    )


def _events(events: Sequence[Mapping[str, Any]]) -> str:
    if not events:
        return '<section class="events" id="events"><h2>Events</h2><p>None recorded.</p></section>'
    keys: list[str] = ["event"]
    for event in events:
        keys += [k for k in event if k not in keys]
    counts: dict[str, int] = {}
    for event in events:
        counts[str(event.get("event"))] = counts.get(str(event.get("event")), 0) + 1
    summary = ", ".join(f"{n} {escape(kind)}" for kind, n in counts.items())
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(event.get(k)))}</td>" for k in keys) + "</tr>"
        for event in events
    )
    return (
        f'<section class="events" id="events"><h2>Events</h2><p>{summary}</p>'
        f"<details{' open' if len(events) <= 40 else ''}><summary>all {len(events)}</summary>"
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
        "</table></div></details></section>"
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _answers(trace: Mapping[str, Any]) -> str:
    cls, label = _verdict(trace.get("correct"), trace.get("error"))
    selected = trace.get("selected")
    chain = next((c for c in trace.get("chains") or [] if c.get("id") == selected), None)
    text = (
        f'<details><summary>the chain\'s text</summary><pre class="chain-text">'
        f"{escape(chain.get('text'))}</pre></details>"
        if chain
        else ""
    )
    via = f' (chain <a href="#node={quote(str(selected))}" class="goto">{escape(selected)}</a>)'
    return (
        f'<section class="answers {cls}" id="answers">'
        f'<div class="answer selected-answer"><h2>Selected answer</h2>'
        f'<output id="prediction">{escape(trace.get("prediction"))}</output>'
        f"<p>{label}{via if selected is not None else ''}</p>{text}</div>"
        f'<div class="answer gold-answer"><h2>Gold answer</h2>'
        f'<output id="gold">{escape(trace.get("gold"))}</output></div></section>'
    )


def _ledger(ledger: Mapping[str, Any] | None) -> str:
    if not ledger:
        return ""
    shown = {k: v for k, v in ledger.items() if isinstance(v, int | float | str)}
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(_cell(v))}</dd>" for k, v in shown.items())
    return f'<details class="ledger"><summary>Ledger</summary><dl>{items}</dl></details>'


def trace_page(trace: Mapping[str, Any], *, nav: Mapping[str, str] | None = None) -> str:
    """One problem's page: the question, both answers, the tree, a chain panel, the events.

    `nav` maps link labels ("index", "previous", "next") to relative addresses.
    """
    data = view_data(trace)
    links = " ".join(
        f'<a href="{escape(href)}">{escape(label)}</a>' for label, href in (nav or {}).items()
    )
    details = trace.get("details") or {}
    events = details.get("events") if isinstance(details, Mapping) else None
    if not data["nodes"]:
        reason = trace.get("error") or "the trace holds no tree"
        stage = f" at {trace['error_stage']}" if trace.get("error_stage") else ""
        tree = (
            f'<p class="empty" id="no-tree">No search tree recorded{escape(stage)}: '
            f"{escape(reason)}</p>"
        )
    else:
        tree = (
            f'<div class="toolbar"><span>{len(data["nodes"])} nodes</span>'
            '<button type="button" data-zoom="0.8">−</button>'
            '<button type="button" data-zoom="1.25">+</button>'
            '<button type="button" data-zoom="0">1:1</button></div>'
            '<div class="tree-wrap"><svg id="tree" role="img" aria-label="search tree"></svg></div>'
        )
    body = (
        f'<nav class="nav">{links}</nav>'
        f'<header><h1>Problem <span id="problem-id">{escape(trace.get("id"))}</span></h1>'
        f'<p class="question">{escape(trace.get("question"))}</p></header>'
        f"{_answers(trace)}"
        '<main class="layout"><section class="tree-pane"><h2>Search tree</h2>'
        f"{tree}{legend()}</section>"
        '<aside class="panel" id="panel"><h2>Chain</h2><div id="panel-body">'
        "<p>Click a node to read its chain.</p></div></aside></main>"
        f"{_events(events or [])}{_ledger(trace.get('ledger'))}"
    )
    script = f"{_json_script('trace-data', data)}\n<script>\n{_static('viewer.js')}</script>\n"
    return _page(f"Problem {trace.get('id')}", body, script)


def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def index_page(
    title: str, rows: Iterable[tuple[str, Mapping[str, Any]]], unreadable: Mapping[str, str]
) -> str:
    """The run's index: one row per problem (its page, grade, answers, tree size)."""
    rows = list(rows)
    graded = [t.get("correct") for _, t in rows if t.get("correct") is not None]
    right = sum(c is True for c in graded)
    body_rows = []
    for href, trace in rows:
        cls, label = _verdict(trace.get("correct"), trace.get("error"))
        nodes = len((trace.get("tree") or {}).get("nodes") or [])
        body_rows.append(
            f'<tr class="{cls}"><td><a href="{escape(href)}">{escape(trace.get("id"))}</a></td>'
            f"<td>{label}</td><td>{escape(trace.get('prediction'))}</td>"
            f"<td>{escape(trace.get('gold'))}</td><td>{nodes}</td>"
            f"<td>{len(trace.get('chains') or [])}</td></tr>"
        )
    bad = "".join(
        f'<li class="error">{escape(name)}: {escape(why)}</li>' for name, why in unreadable.items()
    )
    body = (
        f'<header><h1>{escape(title)}</h1><p id="accuracy">{right} of {len(graded)} graded problems'
        f" correct; {len(rows)} traces.</p></header>"
        + (
            f'<section id="unreadable"><h2>Unreadable traces</h2><ul>{bad}</ul></section>'
            if bad
            else ""
        )
        + '<table class="problems" id="problems"><thead><tr><th>problem</th><th>grade</th>'
        "<th>selected answer</th><th>gold answer</th><th>nodes</th><th>chains</th></tr></thead>"
        f"<tbody>{''.join(body_rows)}</tbody></table>"
    )
    return _page(title, body)


@dataclass
class Viewer:
    """What `build_viewer` wrote: the index page, and each trace it could not show (file name
    -> why; also listed on the index)."""

    index: Path
    unreadable: dict[str, str] = field(default_factory=dict)


# Problems a page cannot be made of: a malformed trace (check_trace misses nothing it draws,
# and these catch the rest), or one nested too deeply to walk.
_BAD_TRACE = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


def _write_new(path: Path, text: str) -> None:
    """Write a page, never through a link (a link planted where a page goes is an OSError)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
        f.write(text)


def write_viewer(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the viewer of a run directory; returns the index page's path (`build_viewer`)."""
    return build_viewer(run_dir, out_dir).index


def build_viewer(run_dir: str | Path, out_dir: str | Path | None = None) -> Viewer:
    """Write the viewer of a run directory.

    Pages go to `out_dir` (default `<run_dir>/viewer`): `index.html` and `problems/*.html`, one
    per trace. An unreadable or malformed trace is listed on the index (and in
    `Viewer.unreadable`), never skipped silently and never a stop. Traces are read as
    untrusted input (regular files of bounded size, `evals.rundir.read_json`); pages are
    written only under `out_dir` and nothing there is deleted (a page of a problem no longer
    in the run stays until its folder is removed by hand).
    """
    run = Path(run_dir)
    traces_dir = run / TRACES
    if not traces_dir.is_dir():
        raise FileNotFoundError(f"{run}: no {TRACES}/ folder (is it a `reason` run directory?)")
    out = Path(out_dir) if out_dir is not None else run / VIEWER
    pages = out / PROBLEMS
    pages.mkdir(parents=True, exist_ok=True)
    if not pages.resolve().is_relative_to(out.resolve()):
        raise NotADirectoryError(f"{pages} is a link out of {out}; nothing written")
    loaded: list[tuple[str, dict[str, Any]]] = []
    unreadable: dict[str, str] = {}
    for path in sorted(traces_dir.glob("*.json")):
        try:
            trace = read_json(path)
            if not isinstance(trace, dict):
                raise ValueError("not a JSON object")
            check_trace(trace)
        except (OSError, ValueError) as exc:
            unreadable[path.name] = f"{type(exc).__name__}: {exc}"
            continue
        loaded.append((path.stem + ".html", trace))
    loaded.sort(key=lambda item: _natural(str(item[1].get("id", item[0]))))
    shown: list[tuple[str, dict[str, Any]]] = []
    for i, (name, trace) in enumerate(loaded):
        nav = {"all problems": f"../{INDEX}"}
        if i > 0:
            nav["previous"] = quote(loaded[i - 1][0])
        if i + 1 < len(loaded):
            nav["next"] = quote(loaded[i + 1][0])
        try:
            _write_new(pages / name, trace_page(trace, nav=nav))
        except (OSError, *_BAD_TRACE) as exc:
            trace_name = name.removesuffix(".html") + ".json"
            unreadable[trace_name] = f"{type(exc).__name__}: {str(exc)[:300]}"
            continue
        shown.append((name, trace))
    rows = [(f"{PROBLEMS}/{quote(name)}", trace) for name, trace in shown]
    index = out / INDEX
    title = f"Traces of {run.resolve().name}"
    try:
        text = index_page(title, rows, unreadable)
    except _BAD_TRACE:  # a field of a trace too deep to show: the index without the rows
        text = index_page(title, [], unreadable | {"(index)": "a trace too deeply nested"})
    _write_new(index, text)
    return Viewer(index, unreadable)
