"""reasoning/generators.py: verifiers reach the shared generators through the core registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import reasoning.generators as registry
from reasoning.build import _generators, generator_for
from tests.fakes import ScriptedGenerator
from verifiers.judge import GenerativeJudge

BACKEND = {"_target_": "tests.fakes.ScriptedGenerator", "texts": ["registry test"]}


@pytest.fixture
def no_shared() -> Iterator[None]:
    before = dict(_generators)
    yield
    _generators.clear()
    _generators.update(before)


def test_a_judge_on_a_backend_config_reuses_the_runs_generator(no_shared: None) -> None:
    policy = generator_for(BACKEND)  # what the run built for its policy
    judge = GenerativeJudge(backend=BACKEND)
    assert isinstance(policy, ScriptedGenerator) and judge.generator is policy


def test_the_registry_uses_the_factory_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    made = ScriptedGenerator()
    monkeypatch.setattr(registry, "_factory", None)
    registry.provide_shared_generators(lambda backend: made)
    assert registry.shared_generator({"any": "config"}) is made
