"""Shared fixtures: one real vLLM engine (SmolLM2 on CPU) per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# The shared benchmark files sit beside the checkout (as in CI) unless REASONING_DATA_DIR says.
SHARED_DATA = Path(os.environ.get("REASONING_DATA_DIR") or REPO.parent / "shared" / "data")
TEST_DATA = Path(__file__).resolve().parent / "data"

# The engine shares these 2 cores with the test process; keep its KV cache small.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def engine() -> Iterator[object]:
    """The default CLI/API generator (SmolLM2 via vLLM), built once through the shared cache."""
    from reasoning.build import build_generator, close_generators, compose_config

    generator = build_generator(compose_config([]))
    generator.start()  # type: ignore[attr-defined]
    yield generator
    close_generators()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through selenium, one per test module (the viewer's and the
    leaderboard's browser tests); a CI machine without it fails rather than skips."""
    pytest.importorskip("selenium.webdriver")
    from evals.viewer.screenshot import chromium, have_chromium

    if not have_chromium():
        message = "needs Debian's chromium and chromium-driver (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with chromium(1400, 1000) as driver:
        yield driver
