"""Responses, stream chunks, usage and errors in OpenAI's JSON shapes, so OpenAI clients (the
`openai` SDK, LiteLLM) read them as they read OpenAI's: an error's status and `error` object
make the SDK raise its own exception type (BadRequestError, AuthenticationError, ...)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from reasoning.budget import Ledger

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    504: "timeout_error",
}


class APIError(Exception):
    """An error answered as OpenAI's error JSON with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def usage(ledger: Ledger, *, choices: int = 1) -> dict[str, Any]:
    """Usage over every call the search made: verifier tokens count as prompt tokens (a
    verifier reads the chains it scores), so `total_tokens` is the whole cost. The breakdown
    tells the parts apart."""
    prompt = ledger.prompt_tokens + ledger.verifier_tokens
    completion = ledger.generated_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": ledger.cached_prompt_tokens},
        "breakdown": {
            "choices": choices,
            "samples": ledger.samples,
            "generator_calls": ledger.generator_calls,
            "generator_prompt_tokens": ledger.prompt_tokens,
            "generated_tokens": ledger.generated_tokens,
            "verifier_calls": ledger.verifier_calls,
            "verifier_tokens": ledger.verifier_tokens,
            "cached_prompt_tokens": ledger.cached_prompt_tokens,
            "cache_hits": ledger.cache_hits,
            "critical_path_tokens": ledger.critical_path_tokens,
            "wall_s": round(ledger.wall_s, 3),
        },
    }


def now() -> int:
    return int(time.time())


def sse(data: Mapping[str, Any] | str) -> bytes:
    """One server-sent event line: `data: {json}` (or `data: [DONE]`)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def chunk(
    rid: str,
    model: str,
    created: int,
    *,
    index: int = 0,
    delta: Mapping[str, Any] | None = None,
    finish_reason: str | None = None,
    object_: str = "chat.completion.chunk",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One streamed chunk; `extra` adds fields beside `choices` (reasoning_status, cut)."""
    if object_ == "chat.completion.chunk":
        choice: dict[str, Any] = {"index": index, "delta": dict(delta or {})}
    else:  # text_completion chunks carry text, not a delta
        choice = {"index": index, "text": (delta or {}).get("content") or ""}
    choice["finish_reason"] = finish_reason
    out = {"id": rid, "object": object_, "created": created, "model": model, "choices": [choice]}
    out.update(extra or {})
    return out
