"""The server's own keys (`server.*` in conf/serve.yaml), declared once with the typed settings
vocabulary, so a bad value fails before the engine starts, naming the key."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from reasoning.settings import (
    Allowed,
    Count,
    NonNegativeCount,
    OptionalCount,
    PositiveFloat,
    Settings,
    settings,
)

Port = Annotated[int, Field(ge=0, le=65535), Allowed("an integer in 0 .. 65535")]
Host = Annotated[str, Field(pattern=r"\S"), Allowed("a non-empty string")]
OptionalText = Annotated[str | None, Allowed("a string or null")]
Names = Annotated[list[str] | None, Allowed("a list of names or null")]

API_KEY_ENV = "REASONING_API_KEY"


@settings
class ServerSettings(Settings):
    """How `reason-serve` listens and what a client may ask of it."""

    settings_key: ClassVar[str] = "server"

    host: Host = "127.0.0.1"
    """interface to bind; 127.0.0.1 keeps the server local (0.0.0.0 exposes it: set a key)"""
    port: Port = 8000
    """TCP port (0: any free port)"""
    api_key: OptionalText = None
    """the one API key clients must send (null: the REASONING_API_KEY environment variable)"""
    api_keys_file: OptionalText = None
    """a file of API keys, one per line (# comments); added to api_key"""
    max_in_flight: Count = 8
    """searches running at once; more wait in the queue"""
    max_queue: NonNegativeCount = 64
    """requests waiting for a search slot; beyond it: 429 with Retry-After"""
    retry_after_s: Count = 1
    """seconds a 429 asks the client to wait (the Retry-After header)"""
    max_body_bytes: Count = 1_000_000
    """largest request body accepted (413 beyond)"""
    allowed_searches: Names = None
    """controllers a request may pick (conf/search names); null: all of them"""
    allowed_verifiers: Names = None
    """verifiers a request may pick (conf/verifier names); null: only the server's own"""
    max_n: Count = 64
    """the largest `n` a request may ask: its choices and its controller's samples"""
    max_tokens: Count = 4096
    """the largest per-sample token cap (search.max_tokens, OpenAI max_tokens) a request may ask"""
    max_verifier_calls: OptionalCount = None
    """verifier calls a request may spend (caps its budget.verifier_calls); null: no cap"""
    max_wall_s: PositiveFloat = 600.0
    """seconds a request may search (its budget.wall_s is capped by it): it then answers with what
    the search has, marked cut"""
    served_models: Names = None
    """model names the server answers to (null: model.name); "search/name" picks a controller"""
    traces: Count = 1000
    """traces kept in memory for GET /v1/traces/{id} (the oldest go first)"""
    trace_dir: OptionalText = None
    """also write every trace to this folder (the viewer reads it); null: memory only"""
    shutdown_grace_s: PositiveFloat = 30.0
    """on SIGTERM, seconds in-flight requests get to finish before they are cancelled"""
