"""Completions and stream deltas to JSON and back, as the cache file stores them.

Decoding restores the tuples the dataclasses hold (JSON made them lists, and int keys strings),
the `FinishReason` enum (also from files written before it existed), and `cached=True`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from reasoning.types import Completion, Delta, FinishReason


def completion_to_json(c: Completion | Delta) -> dict[str, Any]:
    return {f.name: getattr(c, f.name) for f in fields(c) if f.name != "cached"}


def _logprob_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the dataclasses hold (JSON made int keys strings)."""
    logprobs = data.get("logprobs")
    top = data.get("top_logprobs")
    by_id = data.get("token_id_logprobs")
    ids = data.get("token_ids")
    top_ids = data.get("top_token_ids")
    return dict(
        logprobs=None if logprobs is None else tuple(logprobs),
        top_logprobs=None if top is None else tuple(dict(d) for d in top),
        token_id_logprobs=(
            None if by_id is None else tuple({int(k): v for k, v in d.items()} for d in by_id)
        ),
        token_ids=None if ids is None else tuple(ids),
        top_token_ids=None if top_ids is None else tuple(tuple(t) for t in top_ids),
    )


_SPECIAL = (
    "logprobs",
    "top_logprobs",
    "token_id_logprobs",
    "token_ids",
    "top_token_ids",
    "cached",
)


def _finish(data: Mapping[str, Any]) -> FinishReason | None:
    """The stored finish reason as the enum. Files written before the enum hold the engine's
    "stop" for both EOS and a stop string; the stored `stop` tells them apart, as it does for
    a fresh result (`FinishReason.of`), so old cache files replay unchanged."""
    raw = data.get("finish_reason")
    return None if raw is None else FinishReason.of(raw, data.get("stop"))


def completion_from_json(data: Mapping[str, Any]) -> Completion:
    plain = {k: v for k, v in data.items() if k not in _SPECIAL}
    plain["finish_reason"] = _finish(data)
    return Completion(**plain, **_logprob_fields(data), cached=True)


def delta_from_json(data: Mapping[str, Any]) -> Delta:
    fields_ = _logprob_fields(data)
    fields_["token_ids"] = fields_["token_ids"] or ()
    plain = {k: v for k, v in data.items() if k not in _SPECIAL}
    plain["finish_reason"] = _finish(data)
    return Delta(**plain, **fields_, cached=True)
