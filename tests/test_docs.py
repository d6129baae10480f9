"""The docs hold: the worked controller runs as written, the links resolve, and every search
key is documented."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import types
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from evals.grading import Grader
from evals.settings_doc import generated, help_search, page_part
from reasoning import Budget, Context, Outcome, Problem
from reasoning.build import check_verifier
from reasoning.controller import Controller
from reasoning.tree import ROOT, NodeStatus
from tests.conftest import REPO
from tests.fakes import ConstantVerifier, ScriptedGenerator

DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
EXAMPLE_PAGE = DOCS / "adding-a-controller.md"
PROBLEM = Problem("docs", "What is 2 + 5?", "7")


def _fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def _example_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The page's one python block, executed as a module (dataclasses look their module up)."""
    (code,) = _fenced(EXAMPLE_PAGE.read_text(), "python")
    module = types.ModuleType("docs_best_step")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, str(EXAMPLE_PAGE), "exec"), module.__dict__)
    return module


def _script(prompt: str, sampling: object) -> str:
    """First round: alternately a wrong and a right step; later: box the last result written."""
    written = re.findall(r"= (\d+)", prompt)
    if written:
        return f"so \\boxed{{{written[-1]}}}"
    _script.calls += 1  # type: ignore[attr-defined]
    return "2 + 5 = 8" if _script.calls % 2 else "2 + 5 = 7"  # type: ignore[attr-defined]


def _run(search: object, prefer: str, budget: Budget | None = None) -> Outcome:
    _script.calls = 0  # type: ignore[attr-defined]
    # every step of a chain scores high when its last step holds the preferred number
    verifier = ConstantVerifier(lambda text: 0.9 if prefer in text.split("\n\n")[-1] else 0.2)
    ctx = Context(
        PROBLEM, ScriptedGenerator(_script), verifier=verifier, judge=Grader(), budget=budget
    )
    return asyncio.run(search.run(PROBLEM, ctx))  # type: ignore[attr-defined]


# --- (a) the worked example -------------------------------------------------------------------


@pytest.mark.parametrize("prefer", ["7", "8"])
def test_the_example_controller_follows_the_verifier(
    monkeypatch: pytest.MonkeyPatch, prefer: str
) -> None:
    BestStep = _example_module(monkeypatch).BestStep
    out = _run(BestStep(width=2, max_steps=3), prefer)
    # the verifier, not the sample order, picks the step: "8" comes first, "7" second
    assert out.answer == prefer and out.stopped_by is None
    assert out.chain is not None and out.chain.steps[0] == f"2 + 5 = {prefer}"
    rounds = out.details["rounds"]
    assert rounds == len(out.chain.steps) and rounds in (1, 2)
    led = out.ledger
    assert led.generator_calls == rounds  # one call of `width` samples per round
    assert led.samples == led.verifier_calls == 2 * rounds
    tree = out.tree
    assert len(tree) == 2 * rounds
    statuses = {n: tree.status(n) for n in tree.graph.nodes if n != ROOT}
    assert set(statuses.values()) <= {NodeStatus.SELECTED, NodeStatus.PRUNED}
    assert sum(s is NodeStatus.SELECTED for s in statuses.values()) == rounds
    assert tree.status(out.chain.id) is NodeStatus.SELECTED
    other = "8" if prefer == "7" else "7"
    (loser,) = [n for n in statuses if tree.node(n)["step"] == f"2 + 5 = {other}"]
    assert statuses[loser] is NodeStatus.PRUNED and tree.node(loser)["round"] == 0


def test_the_example_controller_stops_on_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    BestStep = _example_module(monkeypatch).BestStep
    out = _run(BestStep(width=2, max_steps=3), "7", Budget(samples=2))
    assert out.stopped_by == "samples"
    assert (out.ledger.generator_calls, out.ledger.samples) == (1, 2)
    assert out.chain is not None and out.chain.steps == ("2 + 5 = 7",)
    assert out.answer == "7"


def test_the_example_yaml_builds_the_example_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    BestStep = _example_module(monkeypatch).BestStep
    (config,) = _fenced(EXAMPLE_PAGE.read_text(), "yaml")
    keys = yaml.safe_load(config)
    assert keys.pop("_target_").rpartition(".")[2] == BestStep.__name__
    defaults = {f.name: f.default for f in fields(BestStep)}
    assert keys == defaults, "the YAML must list every field with the class default"
    search = BestStep(**keys)
    assert isinstance(search, Controller) and search.name == "best_step"
    with pytest.raises(ValueError, match="keeps the verifier's best step"):
        check_verifier(search, None)
    with pytest.raises(ValueError, match="search.width "):
        BestStep(width=0)


# --- (b) links --------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def _links(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", [*PAGES, REPO / "README.md"], ids=lambda p: p.name)
def test_relative_links_point_at_files_in_the_repo(page: Path) -> None:
    broken = []
    for link in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        missing = not path.is_relative_to(REPO) or not path.exists()
        if missing or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(link)
    assert broken == []


def test_the_docs_pages_exist_and_the_index_links_every_page() -> None:
    names = {p.name for p in PAGES}
    assert {
        "index.md",
        "configuration.md",
        "best-of-n.md",
        "beam-and-dvts.md",
        "astar.md",
        "particle-filtering.md",
        "verifiers.md",
        "data-model.md",
        "adding-a-controller.md",
    } <= names
    linked = {link.partition("#")[0] for link in _links(DOCS / "index.md")}
    assert names - {"index.md"} <= linked


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_page_opens_with_a_title_and_a_one_line_summary(page: Path) -> None:
    title, blank, summary, after = page.read_text().splitlines()[:4]
    assert title.startswith("# ") and blank == "" and summary and after == ""


# --- (c) every search key is documented -------------------------------------------------------


def test_the_configuration_tables_are_what_the_declarations_render() -> None:
    """docs/configuration.md carries the settings tables rendered from the declarations
    (`python -m evals.settings_doc` rewrites them), so the page cannot drift from the code."""
    page = (DOCS / "configuration.md").read_text()
    assert page_part(page) == generated()
    for how in ("search=hyper", "search/strategy=hogwild", "+trim=trimr"):
        assert how in generated()


def test_reason_help_search_prints_a_controllers_settings() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "evals.cli", "--help-search", "hyper"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "| `round_tokens` | an integer >= 1 | `64` |" in out.stdout
    assert "token_budget" not in out.stdout
    assert "known: " in help_search("nope")


def test_every_search_key_appears_in_the_configuration_page() -> None:
    page = (DOCS / "configuration.md").read_text()
    missing = {}
    for path in sorted((REPO / "conf" / "search").glob("*.yaml")):
        keys = set(yaml.safe_load(path.read_text())) - {"_target_", "defaults"}
        absent = sorted(k for k in keys if f"`{k}`" not in page)
        if absent:
            missing[path.name] = absent
    assert missing == {}
