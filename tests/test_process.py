"""reasoning/process.py: what the CLI reaches through the core instead of importing a backend."""

from __future__ import annotations

import pytest

from reasoning.backends.vllm_engine import VLLMGenerator
from reasoning.process import _spawn_prelude, shorten_engine_shutdown


def test_shorten_engine_shutdown_sets_the_engines_close_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(VLLMGenerator, "shutdown_timeout_s", None)
    shorten_engine_shutdown(2.0)
    assert VLLMGenerator.shutdown_timeout_s == 2.0


def test_spawned_children_import_the_watcher_from_the_core() -> None:
    prelude = _spawn_prelude(1234)
    compile(prelude, "<prelude>", "exec")  # it runs before multiprocessing's own program
    assert (
        "from reasoning.process import watch_parent" in prelude and "watch_parent(1234)" in prelude
    )
