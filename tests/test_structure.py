"""The shape the code promises: layering, one meaning per search key, tree verbs, name tables."""

from __future__ import annotations

import ast
import asyncio
import importlib
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import yaml

from evals.grading import Grader
from evals.runner import RESULTS, Runner, read_results
from reasoning import Chain, Context, Problem
from reasoning.build import check_verifier
from reasoning.controller import Controller
from reasoning.tree import ROOT, NodeStatus, SearchTree
from reasoning.types import FinishReason
from search import DVTS, AStar, Beam, BestOfN, ParticleFilter
from search.aggregate import reduce_step_scores, select
from search.settings import CHECKS
from tests.conftest import REPO
from tests.fakes import ConstantVerifier, ScriptedGenerator

SEARCH_CONFIGS = sorted((REPO / "conf" / "search").glob("*.yaml"))
PROBLEM = Problem("p", "What is 4 + 5?", "9")

# --- layering: a fan over the core -----------------------------------------------------------
# search/, verifiers/, the generation layer (trim/) and evals/ each import only reasoning/, never
# each other; reasoning/ imports none of them. A rule names a package (a top-level directory)
# and the modules it may not import: a top package forbids all of it, a dotted name (e.g.
# "reasoning.build") that module and its submodules.

FAN = {"search", "verifiers", "evals", "trim"}
FORBIDDEN: dict[str, set[str]] = {
    "reasoning": set(FAN),
    "search": FAN - {"search"},
    "verifiers": FAN - {"verifiers"} | {"reasoning.build"},
    "evals": FAN - {"evals"} | {"reasoning.backends"},
    "trim": FAN - {"trim"},  # the generation layer, once it leaves search/
}
LAYERED = sorted(package for package in FORBIDDEN if (REPO / package).is_dir())


def _imports(source: str, filename: str = "<source>") -> set[str]:
    """Every absolute module `source` imports, dotted in full (`from a.b import c` gives "a.b"
    and "a.b.c", since c may be a module), at any depth (function-level imports count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _breaks(module: str, rules: set[str]) -> set[str]:
    """The rules that importing `module` breaks."""
    return {rule for rule in rules if module == rule or module.startswith(rule + ".")}


@pytest.mark.parametrize("package", LAYERED)
def test_dependencies_fan_out_from_the_core(package: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(
            {
                rule
                for module in _imports(path.read_text(), str(path))
                for rule in _breaks(module, FORBIDDEN[package])
            }
        )
        for path in sorted((REPO / package).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_layering_rules_catch_what_they_forbid() -> None:
    """The scanner sees every import form, and submodule rules match whole dotted names."""
    code = (
        "import verifiers.prm\n"
        "from reasoning.build import generator_for\n"
        "from reasoning import backends\n"
        "def f():\n    from evals.runner import Runner\n"
    )
    found = _imports(code)
    assert {r for m in found for r in _breaks(m, FORBIDDEN["verifiers"])} == {
        "evals",
        "reasoning.build",
    }
    assert {r for m in found for r in _breaks(m, FORBIDDEN["evals"])} == {
        "reasoning.backends",
        "verifiers",
    }
    assert not _breaks("reasoning.builder", {"reasoning.build"})  # a name, not a prefix
    assert "search" in FORBIDDEN["verifiers"] and "verifiers" in FORBIDDEN["search"]


def test_controllers_change_the_tree_only_through_its_verbs() -> None:
    for path in sorted((REPO / "search").rglob("*.py")):
        rel = path.relative_to(REPO)
        assert ".graph" not in path.read_text(), f"{rel} reaches into the tree's graph"


def test_outcome_and_tree_do_not_import_each_other() -> None:
    assert "reasoning.outcome" not in (REPO / "reasoning" / "tree.py").read_text()
    assert "reasoning.tree" not in (REPO / "reasoning" / "types.py").read_text()


# --- one meaning per search key ---------------------------------------------------------------


def _controller(path: Path) -> tuple[type, dict[str, object]]:
    cfg = yaml.safe_load(path.read_text())
    module, _, cls = cfg.pop("_target_").rpartition(".")
    return getattr(importlib.import_module(module), cls), cfg


@pytest.mark.parametrize("path", SEARCH_CONFIGS, ids=lambda p: p.stem)
def test_every_search_config_matches_its_controller(path: Path) -> None:
    cls, keys = _controller(path)
    assert cls.name == path.stem  # the config name is what result lines record
    fixed = set(getattr(cls, "fixed_keys", ()))
    assert set(keys) == {f.name for f in fields(cls)} - fixed, "YAML keys vs controller fields"
    defaults = {f.name: f.default for f in fields(cls) if f.name not in fixed}
    # a block of settings per policy (search=threads): the YAML block lists that policy's own
    # defaults, and the controller's field is empty (meaning those defaults)
    for name, policy in getattr(cls, "policies", {}).items():
        own = {f.name: f.default for f in fields(policy) if f.init}
        own = {k: list(v) if isinstance(v, tuple) else v for k, v in own.items()}
        assert MISSING not in own.values() and keys.get(name) == own, f"search.{name} defaults"
        defaults[name] = keys[name]
    assert MISSING not in defaults.values() and keys == defaults, (
        "the YAML and the class must agree on defaults (CLI == API)"
    )
    assert isinstance(cls(**keys), Controller)


def test_a_key_shared_by_two_controllers_is_a_shared_key() -> None:
    """A key two controllers both have must be in the shared table: one meaning, one check."""
    owners: dict[str, set[str]] = {}
    classes = {path.stem: _controller(path) for path in SEARCH_CONFIGS}
    for stem, (cls, keys) in classes.items():
        if any(cls is not other and issubclass(cls, other) for other, _ in classes.values()):
            continue  # a variant of another controller (greedy, particle Gibbs) shares its keys
        for key in keys:
            owners.setdefault(key, set()).add(stem)
    shared = {k for k, who in owners.items() if len(who) > 1}
    assert shared - set(CHECKS) - {"aggregate"} == set()
    # the notions the issue names are each one key
    for key in ("temperature", "resample_temperature", "max_steps", "max_step_tokens"):
        assert key in owners
    assert owners["resample_temperature"] == {"particle_filter"}
    assert "passes" in classes["particle_gibbs"][1]
    assert owners["filter_duplicates"] == {"beam", "astar"}
    # tokens of one whole sample: a best-of-N sample, a thread policy's rollout
    assert "max_tokens" in owners and owners["max_tokens"] == {"best_of_n", "threads"}
    assert not {"iterations", "sampling_temperature", "dedupe"} & set(owners)


@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [
        (Beam, "max_steps", 0),
        (AStar, "max_steps", 0),
        (ParticleFilter, "temperature", -1.0),
        (ParticleFilter, "resample_temperature", 0.0),
        (DVTS, "max_step_tokens", 0),
        (BestOfN, "max_tokens", 0),
        (BestOfN, "step_reduction", "median"),
        (AStar, "filter_duplicates", "yes"),
        (BestOfN, "n", True),  # a bool is not a count
        (Beam, "temperature", False),
    ],
)
def test_shared_keys_are_validated_alike(cls: type, key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"search.{key} "):
        cls(**{key: value})


@pytest.mark.parametrize(
    ("search", "reason"),
    [
        (Beam(aggregate="majority"), "keeps the verifier's best steps"),
        (ParticleFilter(), "weights its particles by verifier reward"),
        (AStar(), "ranks its frontier by the verifier"),
        (BestOfN(aggregate="weighted"), "ranks the samples by verifier score"),
    ],
)
def test_a_missing_verifier_names_the_controllers_reason(search: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as err:
        check_verifier(search, None)  # type: ignore[arg-type]
    assert f"search={search.name}" in str(err.value)  # type: ignore[attr-defined]
    check_verifier(BestOfN(aggregate="majority"), None)  # needs none


@pytest.mark.parametrize("search", [AStar(max_steps=2), DVTS(n=2, width=2, max_steps=2)])
async def test_result_lines_record_the_config_name(tmp_path: Path, search: object) -> None:
    gen = ScriptedGenerator(["so \\boxed{9}"])
    runner = Runner(gen, search, tmp_path, verifier=ConstantVerifier(), progress=False)  # type: ignore[arg-type]
    await runner.run([PROBLEM])
    (record,) = read_results(tmp_path / RESULTS)
    assert record["search"] == search.name  # type: ignore[attr-defined]
    assert record["search"] in {"astar", "dvts"} and record["search_params"]["max_steps"] == 2


# --- the search tree --------------------------------------------------------------------------


def test_tree_verbs_statuses_and_joins() -> None:
    tree = SearchTree()
    a = Chain().extend("a")
    b = Chain().extend("b")
    tree.add(a)
    tree.add(b, NodeStatus.FINISHED)
    joined = a.extend("a and b", finished=True, finish_reason=FinishReason.EOS)
    tree.add(joined, NodeStatus.JOINED, parents=[a.id, b.id])
    assert sorted(tree.parents(joined.id)) == sorted([a.id, b.id])
    assert tree.path(joined.id)[0] == ROOT and len(tree) == 3
    tree.annotate(a.id, scores=[0.5], f=1.0)
    tree.mark_pruned(a.id, duplicate=True)
    tree.mark_selected(b.id)
    assert tree.status(a.id) is NodeStatus.PRUNED and tree.node(a.id)["f"] == 1.0
    assert tree.status(b.id) == "selected"
    with pytest.raises(ValueError):
        tree.mark(a.id, "discarded")  # not a NodeStatus
    with pytest.raises(ValueError, match="mark"):
        tree.annotate(a.id, status="pruned")
    with pytest.raises(KeyError, match="unknown parents"):
        tree.add(Chain().extend("c"), parents=["nope"])
    with pytest.raises(KeyError, match="no node"):
        tree.mark_finished("nope")
    with pytest.raises(TypeError):
        tree.node(a.id)["status"] = "root"  # type: ignore[index]
    nodes = {n["id"]: n for n in tree.to_json()["nodes"]}
    assert nodes[joined.id]["status"] == "joined" and nodes[joined.id]["finish_reason"] == "eos"


# --- name tables take functions ---------------------------------------------------------------


def test_step_reduction_and_vote_accept_functions() -> None:
    assert reduce_step_scores([0.2, 0.9, 0.4], max) == 0.9
    answers, clusters = ["7", "8", "8"], [0, 1, 1]

    def last_answered(clusters: list[int | None], scores: list[float] | None) -> int:
        return max(i for i, c in enumerate(clusters) if c is not None)

    sel = select(answers, clusters, last_answered)
    assert sel.index == 2 and sel.answer == "8" and sel.votes == {"7": 1.0, "8": 2.0}

    def first(clusters: list[int | None], scores: list[float] | None) -> int:
        return 0

    search = BestOfN(n=3, aggregate=first, step_reduction=min)
    gen = ScriptedGenerator(["\\boxed{1}", "\\boxed{2}", "\\boxed{2}"])
    ctx = Context(PROBLEM, gen, verifier=ConstantVerifier(), judge=Grader())
    out = asyncio.run(search.run(PROBLEM, ctx))
    assert out.answer == "1" and out.ledger.verifier_calls == 3  # scored: a verifier is there
    assert out.details["aggregate"] == "custom"
