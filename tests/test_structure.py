"""The shape the code promises: layering, one meaning per search key, tree verbs, name tables."""

from __future__ import annotations

import ast
import asyncio
import importlib
from pathlib import Path

import pytest
import yaml

from evals.grading import Grader
from evals.rundir import RESULTS, read_results
from evals.runner import Runner
from reasoning import Chain, Context, Problem
from reasoning.build import check_verifier
from reasoning.controller import Controller
from reasoning.settings import default_of, describe, fields_of, meaning
from reasoning.tree import ROOT, NodeStatus, SearchTree
from reasoning.types import FinishReason
from search import DVTS, AStar, Beam, BestOfN, ParticleFilter
from search.aggregate import reduce_step_scores, select
from search.greedy import Greedy
from search.threads import STRATEGIES
from tests.conftest import REPO
from tests.fakes import ConstantVerifier, ScriptedGenerator

SEARCH_CONFIGS = sorted((REPO / "conf" / "search").glob("*.yaml"))
PROBLEM = Problem("p", "What is 4 + 5?", "9")

# --- layering: a fan over the core -----------------------------------------------------------
# search/, verifiers/, the generation layer (trim/) and evals/ each import only reasoning/, never
# each other; reasoning/ imports none of them. A rule names a package (a top-level directory)
# and the modules it may not import: a top package forbids all of it, a dotted name (e.g.
# "reasoning.build") that module and its submodules.

FAN = {"search", "verifiers", "evals", "trim", "serve"}
# the reasoning server reaches search/ only through reasoning.build, and of evals/ only the
# judge, the trace files and the viewer's page
SERVE_EVALS = {"evals.grading", "evals.rundir", "evals.viewer"}
FORBIDDEN: dict[str, set[str]] = {
    "reasoning": set(FAN),
    "search": FAN - {"search"},
    "verifiers": FAN - {"verifiers"} | {"reasoning.build"},
    "evals": FAN - {"evals"} | {"reasoning.backends"},
    "trim": FAN - {"trim"},  # the generation layer: search/ does not import it, nor it search/
    "serve": FAN - {"serve", "evals"}
    | {"reasoning.backends"}
    | {
        f"evals.{path.stem}"
        for path in (REPO / "evals").iterdir()
        if (path.suffix == ".py" or (path / "__init__.py").is_file())
        and path.stem != "__init__"
        and f"evals.{path.stem}" not in SERVE_EVALS
    },
}
LAYERED = sorted(FORBIDDEN)


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
    assert (REPO / package / "__init__.py").is_file(), f"{package}/ is not a package"
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
    assert _breaks("search.settings", FORBIDDEN["trim"]) == {"search"}  # siblings over the core
    assert _breaks("trim.trimmer", FORBIDDEN["search"]) == {"trim"}  # neither imports the other


def test_controllers_change_the_tree_only_through_its_verbs() -> None:
    for path in sorted((REPO / "search").rglob("*.py")) + sorted((REPO / "trim").rglob("*.py")):
        rel = path.relative_to(REPO)
        assert ".graph" not in path.read_text(), f"{rel} reaches into the tree's graph"


def test_outcome_and_tree_do_not_import_each_other() -> None:
    assert "reasoning.outcome" not in (REPO / "reasoning" / "tree.py").read_text()
    assert "reasoning.tree" not in (REPO / "reasoning" / "types.py").read_text()


# --- one meaning per key -------------------------------------------------------------------


STRATEGY_CONFIGS = sorted((REPO / "conf" / "search" / "strategy").glob("*.yaml"))
TRIM_CONFIGS = sorted((REPO / "conf" / "trim").glob("*.yaml"))
ALL_SETTINGS_CONFIGS = SEARCH_CONFIGS + STRATEGY_CONFIGS + TRIM_CONFIGS


def _controller(path: Path) -> tuple[type, dict[str, object]]:
    cfg = yaml.safe_load(path.read_text())
    cfg.pop("defaults", None)  # a nested group's selection (search=threads: its strategy)
    module, _, cls = cfg.pop("_target_").rpartition(".")
    return getattr(importlib.import_module(module), cls), cfg


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("path", ALL_SETTINGS_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_config_matches_its_declaration(path: Path) -> None:
    """Every YAML key is a declared setting with the same default (CLI == API), and every
    declared setting is in the YAML (the strategy of search=threads comes from its own group)."""
    cls, keys = _controller(path)
    assert cls.name == path.stem  # the config name is what result lines record
    declared = {n: f for n, f in fields_of(cls).items() if n != "strategy"}
    assert set(keys) == set(declared), "YAML keys vs declared settings"
    defaults = {n: _plain(default_of(f)) for n, f in declared.items()}
    assert ... not in defaults.values() and keys == defaults, (
        "the YAML and the class must agree on defaults (CLI == API)"
    )
    built = cls(**keys)
    if path in SEARCH_CONFIGS:
        assert isinstance(built, Controller)


def test_threads_strategy_is_a_nested_group_defaulting_to_threadweaver() -> None:
    cfg = yaml.safe_load((REPO / "conf" / "search" / "threads.yaml").read_text())
    assert {"strategy": "threadweaver"} in cfg["defaults"]
    assert {p.stem for p in STRATEGY_CONFIGS} == set(STRATEGIES)


def _meanings() -> dict[str, dict[tuple[str, str], list[str]]]:
    """key -> (accepted values, meaning) -> the configs declaring it that way."""
    seen: dict[str, dict[tuple[str, str], list[str]]] = {}
    for path in ALL_SETTINGS_CONFIGS:
        cls, _ = _controller(path)
        for name, info in fields_of(cls).items():
            what = (describe(info.annotation, info.metadata), meaning(info))
            seen.setdefault(name, {}).setdefault(what, []).append(f"{path.parent.name}/{path.stem}")
    return seen


def test_a_key_means_one_thing_wherever_it_appears() -> None:
    """A key declared by two controllers, strategies or trimmers has one declared meaning:
    the same accepted values (type, bounds, options) and the same description."""
    seen = _meanings()
    assert {k: v for k, v in seen.items() if len(v) > 1} == {}
    undocumented = sorted(k for k, v in seen.items() for (_, text) in v if not text)
    assert undocumented == []


def test_one_name_per_idea() -> None:
    """The ideas the issue names are each one key, wherever they appear."""
    owners = {k: {who for users in v.values() for who in users} for k, v in _meanings().items()}
    assert owners["top_logprobs"] >= {"search/best_of_n", "search/greedy", "search/hyper"}
    assert owners["round_tokens"] >= {"search/hyper", "strategy/hogwild"}
    assert owners["answer_tokens"] >= {
        "search/hyper",
        "strategy/hogwild",
        "strategy/fork_join",
        "trim/trimr",
    }
    assert owners["answer_cue"] >= {"search/hyper", "strategy/hogwild", "strategy/fork_join"}
    assert owners["max_thread_tokens"] >= {"strategy/apr", "strategy/hogwild"}
    old = {
        "logprobs",
        "top_k",
        "interval",
        "delta",
        "chunk_tokens",
        "finisher_tokens",
        "finish_open",
        "summary_tokens",
        "summary_cue",
        "max_child_tokens",
        "max_worker_tokens",
        "token_budget",
        "policy",
        "iterations",
        "sampling_temperature",
        "dedupe",
    }
    assert not old & set(owners)
    assert owners["resample_temperature"] == {"search/particle_filter", "search/particle_gibbs"}
    assert owners["filter_duplicates"] == {"search/beam", "search/astar"}
    assert "n" not in fields_of(Greedy)  # greedy takes one sample: no n to label a run with


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
