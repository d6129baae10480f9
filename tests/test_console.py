"""`evals.console.engine_log`: fds 1 and 2 (children included) to a file, the terminal kept."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evals import console
from tests.conftest import REPO

SCRIPT = textwrap.dedent(
    """
    import logging, subprocess, sys
    from evals import console

    log = sys.argv[1]
    print("before", flush=True)
    with console.engine_log(log):
        print("python stdout")
        print("python stderr", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-c",
             "import os, sys; print('child out'); os.write(2, b'child err\\\\n')"],
            check=True,
        )
        print("ours on the terminal", file=console.stdout())
        print("bar on the terminal", file=console.stderr())
        with console.toolkit_warnings():
            logging.getLogger("search.greedy").warning("ours warned")
            logging.getLogger("vllm.engine").warning("theirs warned")
    print("after", flush=True)
    try:
        with console.engine_log(log):
            print("about to fail", flush=True)
            raise ValueError("boom")
    except ValueError:
        print("error seen on the terminal", file=sys.stderr, flush=True)
    """
)


def test_children_go_to_the_log_and_the_terminal_comes_back(tmp_path: Path) -> None:
    log = tmp_path / "run" / "engine.log"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=True,
    )
    assert out.stdout.splitlines() == ["before", "ours on the terminal", "after"]
    assert out.stderr.splitlines() == [
        "bar on the terminal",
        "WARNING search.greedy: ours warned",
        f"engine log: {log}",
        "error seen on the terminal",
    ]
    logged = log.read_text().splitlines()
    assert "theirs warned" in logged and "ours warned" not in out.stdout
    for line in ("python stdout", "python stderr", "child out", "child err", "about to fail"):
        assert line in logged


def _identity(file: int | Path) -> tuple[int, int]:
    st = os.fstat(file) if isinstance(file, int) else file.stat()
    return (st.st_dev, st.st_ino)


def test_fds_restored_when_an_exception_leaves(tmp_path: Path) -> None:
    before = (_identity(1), _identity(2))
    log = tmp_path / "engine.log"
    with pytest.raises(RuntimeError, match="inside"), console.engine_log(log):
        assert _identity(1) == _identity(2) == _identity(log)
        assert console.stdout() is not sys.stdout
        raise RuntimeError("inside")
    assert (_identity(1), _identity(2)) == before
    assert console.stdout() is sys.stdout and console.stderr() is sys.stderr


def test_an_empty_new_log_is_removed(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    with console.engine_log(log):
        pass
    assert not log.exists()
