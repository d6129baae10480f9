"""The in-process pooling engine: a `vllm.LLM` built on first use and shared per config.

The engine returns raw logits (`use_activation=False`); the softmax is taken by the caller in
float64 (`formats.positive_probability`), so in-process and HTTP scores agree to float32
rounding.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any

from verifiers.prm.formats import Rows


class InProcessEngine:
    """A `vllm.LLM` pooling engine, built on first use; calls are serialized (LLM is sync)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self._llm: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._llm is None:
                from vllm import LLM
                from vllm.config import PoolerConfig

                kwargs = dict(self.config)
                kwargs["pooler_config"] = PoolerConfig(**kwargs["pooler_config"])
                self._llm = LLM(**kwargs)

    def encode(self, prompts: list[list[int]]) -> list[Rows]:
        import torch
        from vllm import PoolingParams

        self.start()
        with self._lock:
            outputs = self._llm.encode(
                [{"prompt_token_ids": ids} for ids in prompts],
                PoolingParams(use_activation=False),
                pooling_task="token_classify",
                use_tqdm=False,
            )
        return [out.outputs.data.to(torch.float32).tolist() for out in outputs]

    def close(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()


# One engine per distinct engine config: PRM objects that differ only in how they query
# (batching, name) share it, as a second 7B copy would not fit next to the first.
_ENGINES: dict[str, InProcessEngine] = {}
_ENGINES_LOCK = threading.Lock()


def shared_engine(config: dict[str, Any]) -> InProcessEngine:
    key = json.dumps(config, sort_keys=True, default=str)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = InProcessEngine(config)
        return _ENGINES[key]


def drop_engine(engine: InProcessEngine) -> None:
    with _ENGINES_LOCK:
        for key in [k for k, v in _ENGINES.items() if v is engine]:
            del _ENGINES[key]
    engine.close()
