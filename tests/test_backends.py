"""The backends share one renderer delegation and one device probe (no engine or server here)."""

from __future__ import annotations

import pytest

from reasoning import devices
from reasoning.backends.base import RenderingBackend
from reasoning.backends.openai_server import OpenAIGenerator
from reasoning.backends.vllm_engine import VLLMGenerator


@pytest.mark.parametrize("backend", [OpenAIGenerator, VLLMGenerator])
def test_backends_render_through_the_one_shared_base(backend: type) -> None:
    assert issubclass(backend, RenderingBackend)
    for verb in ("render", "chat", "tokenize", "detokenize"):
        assert verb not in vars(backend), f"{backend.__name__} re-implements {verb}"
        assert getattr(backend, verb) is getattr(RenderingBackend, verb)


def test_one_cpu_probe_for_the_generator_and_the_prm(monkeypatch: pytest.MonkeyPatch) -> None:
    from reasoning.backends import vllm_engine
    from verifiers.prm import verifier

    assert vllm_engine.on_cpu is devices.on_cpu is verifier.on_cpu
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.on_cpu() is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.on_cpu() is True
