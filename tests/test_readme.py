"""The README's Python example runs as written (on the session's engine)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.engine


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_readme_has_exactly_two_quick_start_commands() -> None:
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, flags=re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make run", "make test"]


def test_readme_python_example_runs(engine) -> None:  # noqa: ANN001
    (example,) = _python_blocks()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    tokens, _, calls = lines[1].partition(" tokens in ")
    assert int(tokens) > 0 and calls == "1 call(s)"
