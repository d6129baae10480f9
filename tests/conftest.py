"""Shared fixtures: one real vLLM engine (SmolLM2 on CPU) per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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
