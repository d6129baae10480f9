"""API keys: one key (`server.api_key`, else REASONING_API_KEY) and a file of keys.

Keys are compared in constant time, never logged, never put in an error message, and never
forwarded upstream (the generator's own `backend.api_key` is the server's, not the client's).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from serve.openai_format import APIError
from serve.settings import API_KEY_ENV, ServerSettings


def load_keys(server: ServerSettings, environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The keys a client may send; empty: no key is asked (the server binds 127.0.0.1)."""
    env = os.environ if environ is None else environ
    keys: set[str] = set()
    one = server.api_key or env.get(API_KEY_ENV)
    if one:
        keys.add(one.strip())
    if server.api_keys_file:
        path = Path(server.api_keys_file).expanduser()
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"server.api_keys_file: cannot read {path}: {exc.strerror}") from None
        keys |= {k.strip() for k in lines if k.strip() and not k.lstrip().startswith("#")}
    return frozenset(k for k in keys if k)


def presented(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: `Authorization: Bearer KEY` (the SDK's) or `X-API-Key`."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key") or None


def check_key(keys: Iterable[str], headers: Mapping[str, str]) -> None:
    """Raise a 401 unless the request carries one of `keys` (nothing to check without keys)."""
    keys = tuple(keys)
    if not keys:
        return
    given = presented(headers)
    if given is None:
        raise APIError(401, "missing API key: send Authorization: Bearer KEY", code="missing_key")
    ok = False
    for key in keys:  # every key compared: the time says nothing about which one was close
        ok |= hmac.compare_digest(given.encode(), key.encode())
    if not ok:
        raise APIError(401, "invalid API key", code="invalid_api_key")
