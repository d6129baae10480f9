"""Shared generators: one per backend config, so a judge on the policy's own model reuses the
policy's engine instead of starting a second one.

How a backend config becomes a generator is the composition root's business
(`reasoning.build`, which registers its cache here when imported); a verifier that is given a
backend config asks this registry, so it depends on the core and not on the config machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reasoning.types import Generator

GeneratorFactory = Callable[[Any], Generator]
"""A backend config -> its generator, the same object for the same config."""

_factory: GeneratorFactory | None = None


def provide_shared_generators(factory: GeneratorFactory) -> None:
    """Register how backend configs become (shared) generators; the last registration wins."""
    global _factory
    _factory = factory


def shared_generator(backend: Any) -> Generator:
    """The generator of one backend config, shared by everyone who asks with the same config."""
    if _factory is None:  # nothing composed a run yet (a verifier built by hand)
        import reasoning.build  # noqa: F401  (registers its factory on import)
    if _factory is None:
        raise RuntimeError("no shared-generator factory is registered (reasoning.build)")
    return _factory(backend)
