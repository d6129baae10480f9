"""Parallel reasoning threads on the real engine (SmolLM2 on CPU): every policy from the CLI,
threads in flight together and sharing the prefix cache, APR on countdown through the runner.

SmolLM2 is not trained on any thread format: the policies' default control text is forced,
so real requests fork and join (docs/threads.md).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evals.experiment import run_experiment
from evals.grading import Grader
from reasoning.build import compose_config
from reasoning.context import Context
from reasoning.loop import run_sync
from reasoning.types import Problem
from search.threads import STRATEGIES, Threads
from search.threads.fork_join import ForkJoin

pytestmark = pytest.mark.engine

POLICIES = ("threadweaver", "apr", "fork_join", "hogwild")
# Small settings per strategy. A strategy's own keys (fork_join's threads, hogwild's
# round_tokens) exist only when it is chosen, so one sweep cannot set them on the command line;
# each small variant is a config of the strategy group (its defaults plus these), found through
# Hydra's --config-dir, as a user would keep presets of their own.
SMALL = {
    "threadweaver": {"max_thread_tokens": 48},
    "apr": {"max_thread_tokens": 48},
    "fork_join": {"threads": 3, "plan_tokens": 32, "answer_tokens": 16, "max_thread_tokens": 48},
    "hogwild": {"round_tokens": 16, "max_thread_tokens": 48},
}


def _small_strategies(root: Path) -> Path:
    """A config dir with `search/strategy/<name>_small.yaml` for each strategy."""
    group = root / "search" / "strategy"
    group.mkdir(parents=True)
    for name, keys in SMALL.items():
        body = {"defaults": [name, "_self_"], **keys}
        (group / f"{name}_small.yaml").write_text(json.dumps(body))
    return root


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def _joins(trace: dict[str, Any]) -> list[int]:
    """How many parents each join of a trace's tree has (a join may also be the selected node)."""
    parents: dict[str, int] = {}
    for edge in trace["tree"]["edges"]:
        parents[edge["target"]] = parents.get(edge["target"], 0) + 1
    return [n for n in parents.values() if n > 1]


def test_every_policy_runs_from_the_cli(tmp_path: Path) -> None:
    """`reason -m search=threads search/strategy=threadweaver,apr,fork_join,hogwild`."""
    sweep = tmp_path / "sweep"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "evals.cli",
            "-m",
            "--config-dir",  # before the overrides: Hydra's parser takes them as one list
            str(_small_strategies(tmp_path / "conf")),
            "search=threads",
            f"search/strategy={','.join(f'{p}_small' for p in POLICIES)}",
            "dataset.arith.n=2",
            "search.max_tokens=160",
            "progress=false",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("critical_path_tokens=") == 4
    runs = {}
    for path in sweep.glob("*/summary.json"):
        # job folders of a long override list are cut to fit (evals.cli.fit_dirname)
        assert len(path.parent.name.encode()) <= 255
        target = json.loads(path.read_text())["config"]["search"]["strategy"]["_target_"]
        names = {f"{s.__module__}.{s.__name__}": n for n, s in STRATEGIES.items()}
        runs[names[target]] = path.parent
    assert set(runs) == set(POLICIES)
    for policy, run in runs.items():
        records = _records(run)
        assert len(records) == 2 and all(r["error"] is None for r in records), policy
        summary = json.loads((run / "summary.json").read_text())
        critical = [r["ledger"]["critical_path_tokens"] for r in records]
        generated = [r["ledger"]["generated_tokens"] for r in records]
        assert summary["ledger"]["critical_path_tokens"] == sum(critical)
        assert all(0 < c <= g for c, g in zip(critical, generated, strict=True)), policy
        # the threads ran side by side: the latency is below the tokens spent
        assert any(c < g for c, g in zip(critical, generated, strict=True)), policy
        for r in records:
            assert r["events"].get("join", 0) >= 1, (policy, r["events"])
            trace = json.loads((run / "traces" / f"{r['id']}.json").read_text())
            assert trace["ledger"]["critical_path_tokens"] == r["ledger"]["critical_path_tokens"]
            assert trace["details"]["strategy"] == policy
            joins = _joins(trace)
            assert joins and max(joins) >= 2, (policy, joins)  # a join with several parents


def test_threads_run_together_and_share_the_prompt_prefix(engine: Any) -> None:
    """Four fork-join threads from one plan: the scheduler runs them at the same time, and the
    prefix cache serves their shared prompt."""
    problem = Problem("t", "What is 17 + 25? Explain each step.", "42")
    ctx = Context(problem, engine, judge=Grader())
    search = Threads(
        strategy=ForkJoin(threads=4, plan_tokens=24, max_thread_tokens=48, join="vote"),
        max_tokens=200,
        # greedy: sampled threads may end at once (EOS) before the poll sees them overlap
        temperature=0.0,
    )
    peak = 0

    async def solve() -> Any:
        nonlocal peak
        task = asyncio.ensure_future(search.run(problem, ctx))
        while not task.done():
            peak = max(peak, engine._engine.output_processor.get_num_unfinished_requests())
            await asyncio.sleep(0.005)
        return await task

    out = run_sync(solve())
    ctx.settle(out)
    assert peak >= 4, f"the threads never ran together (peak {peak} requests in the engine)"
    assert ctx.ledger.generator_calls == 5  # the plan, then 4 threads
    # every thread's prompt is the plan's: the prefix cache serves it to the threads
    assert ctx.ledger.cached_prompt_tokens > 0
    thread_tokens = out.details["rollouts"][0]["thread_tokens"]
    plan = out.details["rollouts"][0]["plan_tokens"]
    assert ctx.ledger.generated_tokens == plan + sum(thread_tokens)
    assert ctx.ledger.critical_path_tokens == plan + max(thread_tokens)


def test_apr_on_countdown_through_the_runner(engine: Any, tmp_path: Path) -> None:
    """`dataset=countdown` with the APR policy: children in their own contexts, graded by the
    exact checker of the expression."""
    cfg = compose_config(
        [
            "search=threads",
            "search/strategy=apr",
            "dataset=countdown",
            "dataset.countdown.n=2",
            "search.max_tokens=160",
            *(f"search.strategy.{k}={v}" for k, v in SMALL["apr"].items()),
            "progress=false",
        ]
    )
    summary = run_experiment(cfg, tmp_path)
    assert summary["problems"] == 2 and summary["errors"] == 0
    assert summary["ledger"]["critical_path_tokens"] < summary["ledger"]["generated_tokens"]
    for r in _records(tmp_path):
        assert r["correct"] in (True, False)  # the checker decided, right or wrong
        trace = json.loads((tmp_path / "traces" / f"{r['id']}.json").read_text())
        numbers = trace["metadata"]["numbers"]
        assert str(trace["metadata"]["target"]) in trace["question"]
        spawn = trace["details"]["rollouts"][0]["spawns"][0]
        assert len(spawn["tasks"]) == 2
        assert all(str(n) in trace["question"] for n in numbers)
