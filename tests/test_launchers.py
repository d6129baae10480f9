"""Sweeps through Hydra launchers (docs/scale-out.md): joblib and submitit's local executor.

A tiny sweep is recorded once on the session's engine; the launcher sweeps then replay it as
`reason -m` subprocesses (no engine starts), and must give the recorded records back, job by
job, and a leaderboard of one row per job.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evals.experiment import run_experiment
from evals.leaderboard import build_leaderboard
from reasoning.build import compose_config
from reasoning.cache import comparable
from tests.conftest import REPO

REASON = [sys.executable, "-m", "evals.cli"]
# the swept key and the fixed overrides of every job (the recording uses the same ones)
SWEEP = {"search.n": ["1", "2"]}
FIXED = ["search=best_of_n", "search.max_tokens=48", "dataset.arith.n=3", "progress=false"]
PROBLEMS = {"arith-L1-0000", "arith-L1-0001", "arith-L1-0002"}
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    # submitit's LocalExecutor: each job a subprocess, as a Slurm job would be
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"],
}


def _records(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda r: r["id"])


@pytest.fixture(scope="module")
def recorded(engine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: ANN001
    """Both jobs of the sweep, recorded in-process on the shared engine into one cache file."""
    root = tmp_path_factory.mktemp("recorded")
    cache = root / "cache.sqlite"
    runs: dict[str, Any] = {}
    for n in SWEEP["search.n"]:
        cfg = compose_config([*FIXED, f"search.n={n}", "cache.mode=record", f"cache.path={cache}"])
        summary = run_experiment(cfg, root / f"n={n}")
        records = _records(root / f"n={n}")
        assert {r["id"] for r in records} == PROBLEMS
        assert all(r["error"] is None and r["ledger"]["generated_tokens"] > 0 for r in records)
        runs[n] = {"records": records, "summary": summary}
    return {"cache": cache, "runs": runs}


def _sweep(launcher: list[str], cache: Path, sweep: Path) -> subprocess.CompletedProcess[str]:
    for plugin in ("hydra_joblib_launcher", "hydra_submitit_launcher"):
        assert importlib.util.find_spec(f"hydra_plugins.{plugin}"), (
            f"{plugin} is not installed: pip install -e '.[test]' (or '.[cluster]')"
        )
    swept = [f"{key}={','.join(values)}" for key, values in SWEEP.items()]
    args = ["-m", *swept, *FIXED, "cache.mode=replay", f"cache.path={cache}", *launcher]
    return subprocess.run(
        [*REASON, *args, f"hydra.sweep.dir={sweep}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.engine
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_a_launcher_sweep_replays_the_recorded_runs_and_makes_a_leaderboard(
    recorded: dict[str, Any], tmp_path: Path, launcher: str
) -> None:
    sweep = tmp_path / "sweep"
    out = _sweep(LAUNCHERS[launcher], recorded["cache"], sweep)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(jobs) == len(SWEEP["search.n"]), sorted(p.name for p in sweep.iterdir())
    for job in jobs:
        (n,) = re.findall(r"search\.n=(\d+)", job.name)
        want = recorded["runs"][n]
        records = _records(job)
        assert {r["id"] for r in records} == PROBLEMS
        # the same records as the recorded run, field for field (reasoning/cache/replay.py)
        assert [comparable(r) for r in records] == [comparable(r) for r in want["records"]]
        # every call was a replay: nothing was generated, and no engine started
        assert all(r["ledger"]["cache_hits"] == r["ledger"]["generator_calls"] for r in records)
        assert sum(r["ledger"]["replayed_tokens"] for r in records) == sum(
            r["ledger"]["generated_tokens"] for r in records
        )
        log = job / "engine.log"  # created on the engine's first output line
        assert not log.exists() or "EngineCore" not in log.read_text(errors="replace")
        summary = json.loads((job / "summary.json").read_text())
        assert summary["problems"] == len(PROBLEMS) and summary["errors"] == 0
        assert summary["accuracy"] == want["summary"]["accuracy"]
        assert summary["config"]["cache"]["mode"] == "replay"
    if launcher == "submitit_local":
        # submitit ran each job as its own process and kept its logs beside the jobs
        assert len(list((sweep / ".submitit").glob("*/*_log.out"))) >= len(jobs)

    board = build_leaderboard([sweep], tmp_path / "board", n_bootstrap=200, audit=False)
    assert board.errors == []
    table = board.table.set_index("params")
    assert sorted(table.index) == [f"n={n}" for n in SWEEP["search.n"]]
    for n, want in recorded["runs"].items():
        row = table.loc[f"n={n}"]
        summary = want["summary"]
        assert (row["dataset"], row["model"], row["search"]) == (
            "arith",
            "smollm2-135m",
            "best_of_n",
        )
        assert row["n"] == summary["n"] and not row["incomplete"]
        graded = [r["correct"] for r in want["records"] if r["correct"] is not None]
        if graded:  # the summary's accuracy is rounded; the row's is not
            assert row["accuracy"] == pytest.approx(sum(graded) / len(graded))
            assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
        else:
            assert math.isnan(row["accuracy"])
        tokens = [r["ledger"]["generated_tokens"] for r in want["records"]]
        assert row["tokens_per_problem"] == pytest.approx(sum(tokens) / len(tokens))
        assert Path(row["run_dirs"]).parent == sweep
    assert (tmp_path / "board" / "leaderboard.md").stat().st_size > 0


# -- the documented launcher commands compose (no engine, no cluster) ---------------------------


def _documented_sweeps() -> list[list[str]]:
    """The `reason -m ... hydra/launcher=...` commands of docs/scale-out.md and the README."""
    found = []
    for page in (REPO / "docs" / "scale-out.md", REPO / "README.md"):
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(), flags=re.S | re.M):
            for command in block.replace("\\\n", " ").splitlines():
                words = shlex.split(command, comments=True)
                if words[:2] == [".venv/bin/reason", "-m"] and any(
                    w.startswith("hydra/launcher=") and "ray" not in w for w in words
                ):
                    found.append(words[2:])
    return found


def _first_of_each_sweep(word: str) -> str:
    """`key=a,b` -> `key=a` (one job's overrides); a list value `[a,b]` stays whole."""
    key, eq, value = word.partition("=")
    if eq and "," in value and not value.startswith("["):
        value = value.split(",")[0]
    return f"{key}{eq}{value}"


def test_the_documented_launcher_sweeps_compose() -> None:
    """Every launcher sweep shown in the docs is accepted by Hydra with its launcher keys (one
    job's config printed with --cfg hydra: an unknown launcher key would fail)."""
    sweeps = _documented_sweeps()
    launchers = {next(w for w in s if w.startswith("hydra/launcher=")) for s in sweeps}
    assert {"hydra/launcher=joblib", "hydra/launcher=submitit_slurm"} <= launchers
    for words in sweeps:
        one_job = [_first_of_each_sweep(w) for w in words]
        out = subprocess.run(
            [*REASON, *one_job, "--cfg", "hydra"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, f"{shlex.join(words)}\n{out.stderr[-2000:]}"
        assert "launcher:" in out.stdout
