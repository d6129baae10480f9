"""The API as a newcomer meets it (issue 19, points 15 and 16): the README's example saved as a
script without an `if __name__ == "__main__":` guard works, and the engine is quiet unless
`verbose=True`.

The fast tests play the engine with a stand-in `_start` that prints from this process and from a
spawned child, as vLLM does; the `engine` tests run the README's example for real.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evals.grading import Grader
from reasoning import process
from reasoning.api import solve
from reasoning.process import default_engine_log, engine_log, engine_output_to, spawn_without_main
from reasoning.types import Completion, Prompt, Sampling
from search import BestOfN
from tests.conftest import REPO
from tests.fakes import ScriptedGenerator


def _run_script(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `body` as a script of its own (no guard), the way a newcomer runs an example."""
    script = tmp_path / "example.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(REPO)!r})\n" + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


# A stand-in for vLLM's start: log lines from this process, then a spawned child (vLLM's engine
# core, spawned on CPU) that prints too. Top level, unguarded, as in the README's example.
_ENGINE_SCRIPT = """
import multiprocessing as mp
from reasoning.backends.vllm_engine import VLLMGenerator
from reasoning.process import engine_output_to

print("body ran", flush=True)


def fake_start(self):
    print("INFO engine main process says hi", flush=True)
    child = mp.get_context("spawn").Process(
        target=print, args=("INFO engine core says hi",), kwargs={"flush": True}
    )
    child.start()
    child.join()
    self._engine = child.exitcode


VLLMGenerator._start = fake_start
generator = VLLMGenerator.__new__(VLLMGenerator)
generator._engine = None
with engine_output_to(sys.argv[1] if len(sys.argv) > 1 else None):
    generator.start()
print("engine core exit code", generator._engine, flush=True)
"""


def test_an_unguarded_script_starts_the_engine(tmp_path: Path) -> None:
    """The engine's spawned processes do not re-run the script: its body runs once and the
    child starts (before, the child re-imported the script, ran its body again and died with
    "An attempt has been made to start a new process before ... bootstrapping phase")."""
    done = _run_script(tmp_path, _ENGINE_SCRIPT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("body ran") == 1, done.stdout + done.stderr[-3000:]
    assert "engine core exit code 0" in done.stdout, done.stdout + done.stderr[-3000:]
    assert "bootstrapping phase" not in done.stderr
    # verbose: the engine's lines stay on the terminal
    assert "engine main process says hi" in done.stdout
    assert "engine core says hi" in done.stdout


def test_a_quiet_engine_writes_its_lines_to_the_log(tmp_path: Path) -> None:
    """Quiet: nothing of the engine (this process or its child) reaches the terminal; all of it
    is in the log; the script's own lines are on the terminal."""
    log = tmp_path / "engine.log"
    done = _run_script(tmp_path, _ENGINE_SCRIPT, str(log))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "says hi" not in done.stdout + done.stderr
    assert done.stdout.splitlines() == ["body ran", "engine core exit code 0"]
    text = log.read_text()
    assert "engine main process says hi" in text and "engine core says hi" in text


def test_a_failed_start_names_the_log(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    with pytest.raises(RuntimeError) as failed, process.engine_output(log):
        os.write(1, b"vLLM: out of memory\n")
        raise RuntimeError("engine failed to start")
    assert f"engine log: {log}" in (failed.value.__notes__ or [])
    assert log.read_text() == "vLLM: out of memory\n"


def test_children_keep_their_main_module_outside_the_block() -> None:
    """Only processes started inside `spawn_without_main` lose `__main__`; others keep it."""
    from multiprocessing import spawn

    with spawn_without_main():
        inside = spawn.get_preparation_data("x")
    outside = spawn.get_preparation_data("x")
    assert not {"init_main_from_path", "init_main_from_name"} & inside.keys()
    main = sys.modules["__main__"]
    if getattr(main, "__file__", None) or getattr(main.__spec__, "name", None):
        assert {"init_main_from_path", "init_main_from_name"} & outside.keys()


def _answer(prompt: str, sampling: object) -> str:
    return "so \\boxed{4}"


class _Probe(ScriptedGenerator):
    """Records, at its first call, where an engine started now would send its output."""

    seen: list[tuple[Path | None, bool]]

    def __init__(self) -> None:
        super().__init__(_answer)
        self.seen = []

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        self.seen.append((engine_log(), process._without_main.get()))
        return await super().complete(prompt, sampling)


@pytest.mark.parametrize(("verbose", "log"), [(False, default_engine_log()), (True, None)])
def test_the_api_is_quiet_unless_verbose(verbose: bool, log: Path | None) -> None:
    """The API hands its engine the quiet log (or the terminal with `verbose=True`), and starts
    every process without the caller's `__main__`; outside the call nothing is changed."""
    gen = _Probe()
    outcome = solve(
        "What is 2 + 2?",
        search=BestOfN(n=2),
        generator=gen,
        verifier=None,
        judge=Grader(),
        verbose=verbose,
    )
    assert outcome.answer == "4"
    assert gen.seen and set(gen.seen) == {(log, True)}
    assert engine_log() is None and process._without_main.get() is False


def test_the_default_log_is_per_process() -> None:
    assert re.fullmatch(rf"reasoning-engine-{os.getpid()}\.log", default_engine_log().name)
    with engine_output_to("x.log"):
        assert engine_log() == Path("x.log")
    assert engine_log() is None


# --------------------------------------------------------------------------------------------
# The real engine (CI): the README's example as a script, without a guard
# --------------------------------------------------------------------------------------------


# a line of vLLM's own log ("WARNING 12-07 12:53:33 [vllm.py:1703] ..."), at any level
VLLM_LOG = re.compile(r"\b(?:DEBUG|INFO|WARNING|ERROR) \d\d-\d\d \d\d:\d\d:\d\d \[")


def _readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return blocks[0]


@pytest.mark.engine
def test_readme_example_as_an_unguarded_script_is_quiet(tmp_path: Path) -> None:
    """Saved as a script and run: it works without a guard, and prints its two lines only."""
    done = _run_script(tmp_path, _readme_example())
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.splitlines()) == 2, done.stdout
    assert not VLLM_LOG.search(done.stdout + done.stderr), done.stdout + done.stderr[-3000:]
    assert "bootstrapping phase" not in done.stderr


@pytest.mark.engine
def test_readme_example_verbose_shows_the_engine(tmp_path: Path) -> None:
    example = _readme_example().replace("overrides=[", "verbose=True, overrides=[", 1)
    assert "verbose=True" in example
    done = _run_script(tmp_path, example)
    assert done.returncode == 0, done.stderr[-3000:]
    assert VLLM_LOG.search(done.stdout + done.stderr), done.stdout + done.stderr[-3000:]
