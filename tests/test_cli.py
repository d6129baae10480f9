"""The `reason` CLI end to end: real engine in a subprocess, resume after a kill, multirun."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, TEST_DATA

REASON = [sys.executable, "-m", "evals.cli"]
FAST = ["search.max_tokens=48", "progress=false"]
# what vLLM, torch and the engine's child processes print; none of it belongs on the terminal
ENGINE_NOISE = re.compile(r"\b(INFO|WARNING|DEBUG)\b|Triton|vllm|NUMA|tcmalloc|pid=\d+")
# the toolkit's own warnings, which do belong on the terminal (evals.console.toolkit_warnings)
TOOLKIT_LINE = re.compile(r"^(WARNING|ERROR) (reasoning|search|verifiers|evals)\.\w")
# a line written by one of the engine's child processes (engine core, worker)
CHILD_LINE = re.compile(r"^\((EngineCore|\w*Worker)\S* pid=\d+\)", re.M)


def _run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REASON, *args], capture_output=True, text=True, timeout=timeout)


def _assert_quiet_terminal(out: subprocess.CompletedProcess[str]) -> None:
    terminal = (out.stdout + out.stderr).splitlines()
    noise = [x for x in terminal if ENGINE_NOISE.search(x) and not TOOLKIT_LINE.match(x)]
    assert noise == []


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time) of a process, from /proc; None when there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), fields[19]


def _descendants(root: int) -> dict[tuple[int, str], str]:
    """Every process below `root`: (pid, start time) -> its command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[1], []).append(int(entry.name))
    found: dict[tuple[int, str], str] = {}
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            stat = _stat(pid)
            if stat is None:
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            found[(pid, stat[2])] = cmdline.decode(errors="replace").strip()
            todo.append(pid)
    return found


def _alive(pid: int, start: str) -> bool:
    """The same process (not a reused pid) is still running (a zombie has ended)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and stat[2] == start


def _left_after(procs: dict[tuple[int, str], str], seconds: float) -> dict[int, str]:
    """Those of `procs` still alive after up to `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(*key) for key in procs):
        time.sleep(0.2)
    return {pid: cmd for (pid, start), cmd in procs.items() if _alive(pid, start)}


# A parent with children of every kind: forked, spawned (one of them with a forked and a spawned
# child of its own) and a spawned process pool; it prints its tree and waits to be killed.
LIFELINE_PARENT = """
import multiprocessing as mp, time
from concurrent.futures import ProcessPoolExecutor
from reasoning.process import install_lifeline

def sleep():
    time.sleep(300)

def parent():
    mp.get_context("fork").Process(target=sleep).start()
    mp.get_context("spawn").Process(target=sleep).start()
    time.sleep(300)

if __name__ == "__main__":
    install_lifeline()
    for method, target in (("fork", sleep), ("spawn", parent), ("fork", parent)):
        mp.get_context(method).Process(target=target).start()
    pool = ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"))
    for job in [pool.submit(time.sleep, 0.2) for _ in range(4)]:
        job.result()
    pool.submit(time.sleep, 300)
    print("ready", flush=True)
    time.sleep(300)
"""


def test_children_end_with_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL runs no cleanup: the children (here 3, 4 grandchildren, 2 pool workers and the
    resource tracker) end by themselves within seconds (install_lifeline)."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(LIFELINE_PARENT))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "ready":
                break
        deadline = time.monotonic() + 30
        while len(children := _descendants(proc.pid)) < 10 and time.monotonic() < deadline:
            time.sleep(0.2)  # a grandchild may still be starting
        assert len(children) == 10, children
        os.kill(proc.pid, signal.SIGKILL)  # the parent alone: its group would take them all
        proc.wait()
        left = _left_after(children, 15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a failure must not leak the processes
        proc.wait()
    assert left == {}


def test_long_sweep_folder_names_are_cut_to_fit_and_kept_apart() -> None:
    from evals.cli import fit_dirname

    short = "search.n=4,search=beam"
    assert fit_dirname(short) == short
    long_a = ",".join(f"search.key{i}={i}" for i in range(40))
    long_b = long_a.replace("key0=0", "key0=1")
    cut_a, cut_b = fit_dirname(long_a), fit_dirname(long_b)
    assert len(cut_a.encode()) <= 200 and len(cut_b.encode()) <= 200
    assert cut_a != cut_b and cut_a[:100] == long_a[:100]
    assert len(fit_dirname("é" * 300).encode()) <= 200  # never cut inside a character
    # a group override must not nest folders (the sweep's summaries sit one level down)
    assert fit_dirname("search/strategy=apr,search=threads") == "search.strategy=apr,search=threads"


def test_help_lists_groups() -> None:
    out = _run(["--help"])
    assert out.returncode == 0
    for word in (
        "search: adaptive_sc, astar, auto, beam, best_of_n, deepconf, dvts, greedy, hyper, mcts, "
        "particle_filter",
        "trim: budget, sdv, trimr",
        "+trim=OPTION",
        "dataset: aime24",
        "smollm2-135m",
        "resumes",
    ):
        assert word in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dataset=nope"], "Available options in 'dataset'"),
        (["search=nope"], "best_of_n"),
        (["dataset.name=nope"], "valid"),
        (["search.aggregate=weighted"], "needs a verifier"),
        (["search.aggregate=plurality"], "search.aggregate"),
    ],
)
def test_bad_names_fail_fast_with_the_valid_ones(args: list[str], message: str) -> None:
    out = _run(args, timeout=120)
    assert out.returncode != 0
    assert message in out.stdout + out.stderr


def test_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "oops"\n')
    out = _run(["dataset=math500", f"dataset.path={bad}", f"hydra.run.dir={tmp_path / 'r'}"])
    assert out.returncode != 0
    assert f"{bad}, line 2" in out.stderr


def _stop_mid_run(
    args: list[str], run_dir: Path, sig: signal.Signals, records: int
) -> tuple[int, str, float, dict[tuple[int, str], str], dict[int, str]]:
    """Run `reason`, send `sig` to it alone once `records` problems are done. Returns its exit
    status, output, seconds from the signal to its exit, its child processes just before the
    signal, and those of them still alive 20 s after it exited."""
    proc = subprocess.Popen(
        [*REASON, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 420
        while len(_records(run_dir)) < records and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
        children = _descendants(proc.pid)
        sent = time.monotonic()
        os.kill(proc.pid, sig)  # the process alone: its group would take the children with it
        output, _ = proc.communicate(timeout=60)
        exit_s = time.monotonic() - sent
        left = _left_after(children, 20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a failure must not leak an engine
        proc.wait()
    return proc.returncode, output, exit_s, children, left


@pytest.mark.engine
def test_killed_run_resumes_without_losing_results(tmp_path: Path) -> None:
    """kill -9 mid-run, then SIGTERM mid-run: neither leaves an engine process behind, SIGTERM
    stops within seconds, and the next run resumes where they stopped."""
    run_dir = tmp_path / "run"
    args = [
        *FAST,
        "dataset.arith.n=6",
        "search.n=2",
        "concurrency=1",
        f"hydra.run.dir={run_dir}",
    ]
    code, output, _, children, left = _stop_mid_run(args, run_dir, signal.SIGKILL, records=2)
    assert code == -signal.SIGKILL, output[-3000:]
    engine = [cmd for cmd in children.values() if "EngineCore" in cmd or "Worker" in cmd]
    assert len(engine) >= 2, children  # the engine core and its worker were running
    assert left == {}, "processes of the killed run outlived it"
    before = _records(run_dir)
    assert 2 <= len(before) < 6, "the run should have been killed part-way"

    code, output, exit_s, children, left = _stop_mid_run(
        args, run_dir, signal.SIGTERM, records=len(before) + 1
    )
    assert code == 128 + signal.SIGTERM, output[-3000:]
    assert exit_s < 8, f"SIGTERM took {exit_s:.1f} s"
    assert f"stopped by SIGTERM; finished problems are saved in {run_dir}" in output
    assert any("EngineCore" in cmd for cmd in children.values()), children
    assert left == {}, "processes of the stopped run outlived it"
    middle = _records(run_dir)
    assert len(before) < len(middle) < 6 and middle[: len(before)] == before
    before = middle
    logged_before = (run_dir / "engine.log").stat().st_size

    out = _run(args)
    assert out.returncode == 0, out.stderr[-3000:]
    after = _records(run_dir)
    assert [r["id"] for r in after[: len(before)]] == [r["id"] for r in before]
    assert after[: len(before)] == before  # nothing finished was recomputed or lost
    assert sorted(r["id"] for r in after) == [f"arith-L1-{i:04d}" for i in range(6)]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["problems"] == 6 and summary["n"] == 6
    assert summary["ledger"]["samples"] == 12
    assert "accuracy" in out.stdout and "generated_tokens=" in out.stdout
    assert len(list((run_dir / "traces").glob("*.json"))) == 6
    # the engine's output (its child processes' included) is in engine.log, not on the terminal
    assert f"run dir   {run_dir}" in out.stdout and "arith: 6 problems" in out.stdout
    _assert_quiet_terminal(out)
    engine_log = (run_dir / "engine.log").read_bytes()[logged_before:].decode(errors="replace")
    assert "WARNING" in engine_log and CHILD_LINE.search(engine_log)


@pytest.mark.engine
def test_multirun_on_math500_problems(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    out = _run(
        [
            "-m",
            "search=greedy,best_of_n",  # greedy has no n: sweep a key both read
            "search.max_tokens=32,48",
            "dataset=math500",
            f"dataset.path={TEST_DATA / 'math500_sample.jsonl'}",
            "dataset.limit=2",
            "progress=false",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(runs) == 4
    for run in runs:
        records = _records(run)
        assert len(records) == 2
        assert all(r["correct"] in (True, False) for r in records)  # real gold answers graded
        assert all(r["grader"]["name"] == "reasoning-grader" for r in records)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["n"] == 2 and len(summary["ci95"]) == 2
    samples = {
        run.name: json.loads((run / "summary.json").read_text())["ledger"]["samples"]
        for run in runs
    }
    assert samples[next(k for k in samples if k.endswith("max_tokens=32,search=best_of_n"))] == 16
    assert samples[next(k for k in samples if k.endswith("max_tokens=32,search=greedy"))] == 2
    # one engine for all jobs: its child processes write to the first job's log
    _assert_quiet_terminal(out)
    assert out.stdout.count("accuracy") == 4
    assert CHILD_LINE.search((runs[0] / "engine.log").read_text())


@pytest.mark.engine
@pytest.mark.parametrize(
    "dataset",
    [
        ["dataset.arith.n=2", "search.step_reduction=model"],  # model aggregation
        [
            "dataset=math500",
            f"dataset.path={TEST_DATA / 'math500_sample.jsonl'}",
            "dataset.limit=2",
        ],
    ],
    ids=["arith", "math500"],
)
def test_weighted_best_of_n_with_verifiers(tmp_path: Path, dataset: list[str]) -> None:
    """`search.aggregate=weighted` with the judge and with the arithmetic checker."""
    sweep = tmp_path / "sweep"
    out = _run(
        [
            "-m",
            "verifier=judge,arith",
            *dataset,
            "search.n=3",
            "search.aggregate=weighted",
            *FAST,
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(runs) == 2
    for run in runs:
        records = _records(run)
        assert len(records) == 2
        for r in records:
            assert r["ledger"]["verifier_calls"] == 3
            assert r["correct"] in (True, False)
            assert r["missing_scores"] is None and r["votes"]
        trace = json.loads(next((run / "traces").glob("*.json")).read_text())
        assert all(len(c["scores"]) == c["steps"] for c in trace["chains"])
    (judged,) = [r for r in runs if "verifier=judge" in r.name]
    assert all(r["ledger"]["verifier_tokens"] > 0 for r in _records(judged))


@pytest.mark.engine
def test_every_step_level_controller_runs_end_to_end(tmp_path: Path) -> None:
    """`reason -m search=beam,dvts,astar,particle_filter,particle_gibbs verifier=arith`."""
    sweep = tmp_path / "sweep"
    budget = 480
    out = _run(
        [
            "-m",
            "search=beam,dvts,astar,particle_filter,particle_gibbs",
            "verifier=arith",
            "search.step_reduction=model",
            "dataset.arith.n=2",
            "++search.max_step_tokens=32",  # ++: the base config (best_of_n) lacks the key
            f"budget.generated_tokens={budget}",
            "progress=false",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(runs) == 5
    names = set()
    depths: list[int] = []
    for run in runs:
        deepest = 0
        records = _records(run)
        assert len(records) == 2, run.name
        for r in records:
            assert f"search={r['search']}" in run.name  # the config name, e.g. astar, dvts
            names.add(r["search"])
            # the first iteration may spend the whole token budget (scoring goes on)
            assert r["ledger"]["verifier_calls"] > 0 or r["stopped_by"] == "generated_tokens"
            # a reached budget is overshot by at most one token per sample in flight
            assert r["ledger"]["generated_tokens"] <= budget + 8
            trace = json.loads((run / "traces" / f"{r['id']}.json").read_text())
            ids = {node["id"] for node in trace["tree"]["nodes"]}
            assert {c["id"] for c in trace["chains"]} <= ids
            assert len(ids) > len(trace["chains"])  # the tree holds more than the answers
            assert r["missing_scores"] is None  # no fall-back to majority voting
            deepest = max(deepest, *(node.get("depth", 0) for node in trace["tree"]["nodes"]))
        depths.append(deepest)
    # Sampled on CPU (no per-request seeds), SmolLM2 may finish a controller's chains in their
    # first step (a 32-token step ends its chain), but not every controller's on every problem
    assert max(depths) >= 2, f"model aggregation never got past step 1: {depths}"
    assert names == {"beam", "dvts", "astar", "particle_filter", "particle_gibbs"}
