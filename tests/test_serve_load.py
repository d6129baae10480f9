"""benchmarks/serve_load.py in its `--stub` mode (an instant local upstream, no engine): tiny
counts, a few seconds; the report holds every figure and no accepted request failed."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "serve_load.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("serve_load", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def test_stub_run_reports_every_figure_and_no_accepted_request_fails(tmp_path: Path) -> None:
    out = tmp_path / "serve_load"
    command = [
        sys.executable, str(SCRIPT), "--stub", "--requests", "6", "--concurrency", "2",
        "--rounds", "1", "--latency-requests", "4", "--max-in-flight", "2", "--max-queue", "1",
        "--seconds", "20", "--stub-delay-s", "0.3", "--out", str(out),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    table = out.with_suffix(".md").read_text()
    assert table in done.stdout and "| figure | value | goal |" in table

    passthrough = report["passthrough"]
    for arm in ("direct", "ours"):
        assert passthrough[arm]["ok"] == passthrough[arm]["sent"] == 6, passthrough[arm]
        assert passthrough[arm]["tokens"] > 0
    # both arms count the same tokens for the same requests (greedy over the same stub)
    assert passthrough["direct"]["tokens"] == passthrough["ours"]["tokens"]
    assert number(passthrough["tokens_per_s_ratio"]) and passthrough["tokens_per_s_ratio"] > 0
    latency = passthrough["added_latency_ms"]
    assert latency["pairs"] == 4 and number(latency["p50"]) and number(latency["p99"])
    assert latency["p99"] >= latency["p50"]
    assert number(passthrough["cpu_ms_per_request"]) and passthrough["cpu_ms_per_request"] > 0

    for name in ("best_of_8", "particle_filter"):
        arm = report[name]
        assert arm["failed"] == 0 and arm["ok"] == 6, arm
        assert number(arm["requests_per_s"]) and number(arm["tokens_per_s"])
        assert number(arm["cpu_ms_per_request"])
    # best-of-8 counts every sample: 8 times a greedy answer's tokens
    assert report["best_of_8"]["tokens"] == 8 * passthrough["ours"]["tokens"]

    overload = report["overload"]
    assert overload["concurrent"] == 4 * (2 + 1) == 12
    assert overload["accepted"] + overload["rejected_429"] == 12
    assert overload["rejected_429"] > 0 and overload["accepted"] >= 3
    assert overload["failed_accepted"] == 0, overload["errors"]
    assert overload["share_429"] == overload["rejected_429"] / 12

    streamed = report["best_of_8"]["streaming"]
    assert streamed["chunks"] >= 2, streamed
    assert 0 < streamed["first_chunk_ms"] <= streamed["first_text_ms"] <= streamed["total_ms"]
    # without --peers-bin the peers are named, not run
    assert set(report["peers"]) == {"its_hub", "optillm"}
    assert all("not installed" in state for state in report["peers"].values())
    for figure in ("tokens/s ratio", "added latency p50", "CPU per passthrough request", "429"):
        assert figure in table


def test_help_lists_the_bounds() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "--requests" in done.stdout and "--seconds" in done.stdout and "--stub" in done.stdout


def test_no_request_starts_after_the_seconds_cap() -> None:
    serve_load = load()
    started: list[float] = []

    async def call(i: int) -> object:
        started.append(time.monotonic())
        await asyncio.sleep(0.05)
        return serve_load.Outcome(True, 0.05)

    t0 = time.monotonic()
    outcomes = asyncio.run(serve_load.pool(call, 1000, 2, 0.2))
    assert 2 <= len(outcomes) < 20
    assert max(started) - t0 <= 0.2 + 0.05


def test_a_failed_request_is_counted_not_raised() -> None:
    serve_load = load()

    async def broken() -> object:
        raise ConnectionError("upstream down")

    outcome = asyncio.run(serve_load.timed(broken))
    assert not outcome.ok and "ConnectionError" in outcome.error
    arm = serve_load.Phase()
    arm.add([outcome, serve_load.Outcome(True, 0.1, tokens=5)], 1.0)
    summary = arm.summary()
    assert summary["failed"] == 1 and summary["ok"] == 1 and summary["tokens_per_s"] == 5.0


def test_process_cpu_counts_this_processs_cpu() -> None:
    serve_load = load()
    before, own = serve_load.process_cpu_s(os.getpid()), time.process_time()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    spent = serve_load.process_cpu_s(os.getpid()) - before
    assert abs(spent - (time.process_time() - own)) < 0.05
