"""The bad-input corpus: every line of tests/data/bad_inputs/*.jsonl of a kind run here.

- `config`: `reason <overrides>` must fail, say what `expect.error_contains` lists (the key,
  its valid values, the file and line of bad data), and fail before the engine starts: no
  engine line in the run directory's engine.log.
- `grading`: `evals.grading.is_equivalent(prediction, gold)` must give `expect.verdict`.

Lines of other kinds (`problem`: tests/test_runner_faults.py) belong to other tests and are not
collected here. Cases are named `<file>:<case>`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, TEST_DATA

CORPUS = TEST_DATA / "bad_inputs"
KINDS = ("config", "grading")
# a line the engine (or one of its child processes) writes: none may exist after a config error
ENGINE_LINE = re.compile(r"vllm|EngineCore|Worker|torch", re.IGNORECASE)
CONFIG_TIMEOUT_S = 120  # a config error takes a second or two; the engine alone takes minutes
PARALLEL = 4


def _cases() -> list[Any]:
    cases = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            case = json.loads(line)
            assert {"case", "kind", "expect"} <= case.keys(), f"{path}, line {lineno}"
            if case["kind"] in KINDS:
                cases.append(pytest.param(case, id=f"{path.stem}:{case['case']}"))
    return cases


CASES = _cases()


class _ConfigRuns:
    """Runs every selected config case's `reason` once, a few at a time (each is mostly
    Python start-up), on first use; tests then read their own."""

    def __init__(self, root: Path, cases: list[dict[str, Any]]) -> None:
        self.root = root
        self.pool = ThreadPoolExecutor(PARALLEL)
        self.runs: dict[str, Future[subprocess.CompletedProcess[str]]] = {
            c["case"]: self.pool.submit(self._run, c) for c in cases
        }

    def run_dir(self, case: dict[str, Any]) -> Path:
        return self.root / case["case"]

    def _run(self, case: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        args = [*case["overrides"], f"hydra.run.dir={self.run_dir(case)}"]
        return subprocess.run(
            [sys.executable, "-m", "evals.cli", *args],
            capture_output=True,
            text=True,
            cwd=REPO,  # the corpus names its data files relative to the repository
            timeout=CONFIG_TIMEOUT_S,
        )

    def result(self, case: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.runs[case["case"]].result()


@pytest.fixture(scope="module")
def config_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> _ConfigRuns:
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    runs = _ConfigRuns(
        tmp_path_factory.mktemp("bad_config"), [c for c in selected if c["kind"] == "config"]
    )
    request.addfinalizer(lambda: runs.pool.shutdown(cancel_futures=True))
    return runs


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: dict[str, Any], request: pytest.FixtureRequest) -> None:
    if case["kind"] == "config":
        _check_config(case, request.getfixturevalue("config_runs"))
    else:
        _check_grading(case)


def _check_config(case: dict[str, Any], runs: _ConfigRuns) -> None:
    out = runs.result(case)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-2000:]
    for expected in case["expect"]["error_contains"]:
        assert expected in text, f"{expected!r} not in:\n{text[-2000:]}"
    assert "Traceback" not in text, text[-2000:]  # the message alone, for a bad config
    log = runs.run_dir(case) / "engine.log"
    engine_lines = (
        [x for x in log.read_text(errors="replace").splitlines() if ENGINE_LINE.search(x)]
        if log.exists()
        else []
    )
    assert engine_lines == [], "the engine started before the config error"


def _check_grading(case: dict[str, Any]) -> None:
    from evals.grading import is_equivalent

    verdict = is_equivalent(case["prediction"], case["gold"])
    assert verdict is case["expect"]["verdict"], (case["prediction"], case["gold"], verdict)
