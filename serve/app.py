"""The HTTP app: OpenAI-compatible endpoints over the one solve path.

Every request is solved by `reasoning.solver.solve_problem` with parts built from the server's
config and the request's method (serve/requests.py, serve/state.py). The app only reads
requests, admits them (serve/limits.py), streams progress and writes answers in OpenAI's
shapes (serve/openai_format.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from reasoning.chat import chat_problem, completion_problem, split_reply
from reasoning.progress import ProgressFeed
from reasoning.solver import Solved, solve_problem
from reasoning.types import FinishReason, Problem
from serve.auth import check_key
from serve.openai_format import APIError, chunk, error_body, now, sse, usage
from serve.requests import bad, method_of
from serve.state import Plan, ServerState

DEADLINE_GRACE_S = 5.0  # past budget.wall_s, a search still running is cancelled and cut
SolveFn = Callable[..., Awaitable[Solved]]


def _takes_feed(solve: SolveFn) -> bool:
    try:
        return "feed" in inspect.signature(solve).parameters
    except (TypeError, ValueError):
        return False


class Exchange:
    """One request's answer in the making: its choices' solves and how they become JSON."""

    def __init__(
        self, state: ServerState, plan: Plan, problem: Problem, body: Mapping[str, Any], kind: str
    ) -> None:
        self.state = state
        self.plan = plan
        self.problem = problem
        self.body = body
        self.kind = kind  # "chat" | "completion"
        self.rid = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex
        self.model = str(body.get("model"))
        self.created = now()
        self.choices = int(body.get("n") or 1)
        seed = body.get("seed")
        self.seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else state.seed
        stop = body.get("stop")
        self.stop = [stop] if isinstance(stop, str) else [s for s in stop or [] if s]
        self.tasks: list[asyncio.Task[Solved]] = []
        self.started = time.monotonic()

    def admitted(self) -> None:
        """The request got its search slot: its wait is metered, its latency starts."""
        started = time.monotonic()
        self.state.metrics.queue_wait.observe(started - self.started)
        self.started = started

    @property
    def deadline_s(self) -> float:
        wall = self.plan.parts.budget.wall_s or self.state.server.max_wall_s
        return wall + DEADLINE_GRACE_S

    def start(self, feed: Any = None) -> None:
        """Start every choice's solve (choice i with seed + i); the feed follows choice 0."""
        solve: SolveFn = self.state.solve
        for i in range(self.choices):
            kwargs: dict[str, Any] = {"seed": self.seed + i}
            if i == 0 and feed is not None:
                kwargs["feed"] = feed
            task = asyncio.ensure_future(solve(self.problem, self.plan.parts, **kwargs))
            self.tasks.append(task)
            self.state.tasks.add(task)
            task.add_done_callback(self.state.tasks.discard)

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def results(self) -> list[Solved | None]:
        """The solves, each None when its deadline cut it before it returned. The deadline
        counts from admission: a stream that spent it following progress waits no longer."""
        left = max(0.0, self.started + self.deadline_s - time.monotonic())
        done, pending = await asyncio.wait(self.tasks, timeout=left)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return [t.result() if t in done and not t.cancelled() else None for t in self.tasks]

    # --- answers --------------------------------------------------------------------------

    def choice(self, index: int, solved: Solved | None) -> dict[str, Any]:
        """One choice: the chosen chain's text split into reasoning, content and tool calls."""
        if solved is not None and solved.error is not None:
            raise _search_error(solved.error)
        outcome = solved.outcome if solved is not None else None
        if outcome is None:  # cut by the deadline before the search returned
            return {
                "index": index,
                "content": "",
                "reasoning": None,
                "tool_calls": [],
                "finish_reason": "length",
                "cut": True,
                "answer": None,
            }
        chain = outcome.chain
        text = chain.text if chain is not None else (outcome.answer or "")
        thinking = getattr(self.state.generator, "thinking", None)
        reply = split_reply(text, solved.problem, thinking) if solved else None
        content = reply.content if reply is not None else text
        cut = outcome.stopped_by is not None
        finish = "length" if cut else _finish(chain.finish_reason if chain else None)
        if content and self.stop:
            at = min((content.find(s) for s in self.stop if s in content), default=-1)
            if at >= 0:
                content, finish = content[:at], "stop"
        calls = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in (reply.tool_calls if reply is not None else ())
        ]
        if calls:
            finish = "tool_calls"
        return {
            "index": index,
            "content": content,
            "reasoning": reply.reasoning if reply is not None else None,
            "tool_calls": calls,
            "finish_reason": finish,
            "cut": cut,
            "answer": outcome.answer,
        }

    def ledger(self, results: list[Solved | None]) -> Any:
        from reasoning.budget import Ledger

        total = Ledger()
        for solved in results:
            if solved is not None:
                total.add(solved.ledger)
        return total

    def finish(self, results: list[Solved | None]) -> tuple[list[dict[str, Any]], Any]:
        """The choices, the summed ledger; traces kept and metrics counted."""
        choices = [self.choice(i, s) for i, s in enumerate(results)]
        ledger = self.ledger(results)
        for i, solved in enumerate(results):
            if solved is not None and solved.outcome is not None:
                self.state.keep_trace(*self.trace(i, solved, choices[i]))
        controller = self.plan.controller
        metrics = self.state.metrics
        metrics.spent(controller, ledger)
        metrics.latency.labels(controller).observe(time.monotonic() - self.started)
        if any(c["cut"] for c in choices):
            metrics.cut.labels(controller).inc()
        return choices, ledger

    def trace(self, index: int, solved: Solved, choice: Mapping[str, Any]) -> tuple[str, Any]:
        from evals.rundir import build_trace

        tid = self.rid if index == 0 else f"{self.rid}-{index}"
        record = {
            "prediction": solved.outcome.answer if solved.outcome else None,
            "correct": None,
            "ledger": solved.ledger.to_dict(),
        }
        trace = build_trace(solved.problem, solved.outcome, record)
        trace |= {
            "id": tid,
            "model": self.model,
            "search": self.plan.controller,
            "finish_reason": choice["finish_reason"],
            "cut": choice["cut"],
        }
        return tid, trace

    def response(self, choices: list[dict[str, Any]], ledger: Any) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        for c in choices:
            if self.kind == "chat":
                message: dict[str, Any] = {"role": "assistant", "content": c["content"]}
                if c["reasoning"] is not None:
                    message["reasoning_content"] = message["reasoning"] = c["reasoning"]
                if c["tool_calls"]:
                    message["tool_calls"] = c["tool_calls"]
                item = {"index": c["index"], "message": message}
            else:
                item = {"index": c["index"], "text": c["content"] or "", "logprobs": None}
            item |= {"finish_reason": c["finish_reason"], "cut": c["cut"], "answer": c["answer"]}
            out.append(item)
        return {
            "id": self.rid,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": out,
            "usage": usage(ledger, choices=len(choices)),
            "cut": any(c["cut"] for c in choices),
            "search": self.plan.controller,
        }


def _unsent(content: str, sent: str) -> str:
    """What of the final content the streamed tokens have not said (their leading blank and
    the reply's stripping aside). A final content that does not continue them (a trimmer that
    rewrote the answer) is not sent twice: the finish chunk carries it whole."""
    if content.startswith(sent):
        return content[len(sent) :]
    if content.lstrip().startswith(sent.lstrip()):
        return content.lstrip()[len(sent.lstrip()) :]
    return "" if sent else content


def _problem_id(body: Mapping[str, Any], kind: str) -> str:
    """The solved problem's id: a hash of what is asked, not the response id. The Context
    seeds its samples from (seed, problem id), so the same request with the same seed samples
    the same (OpenAI's `seed`), and a recorded request replays (cache.mode=replay)."""
    asked = {k: body.get(k) for k in ("messages", "tools", "tool_choice", "prompt")}
    text = json.dumps([kind, asked], sort_keys=True, default=str)
    return "req-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _finish(reason: FinishReason | str | None) -> str:
    if reason in (FinishReason.LENGTH, FinishReason.BUDGET, FinishReason.MAX_STEPS):
        return "length"
    return "stop"


# the openai backend's errors of an upstream that kept failing a request or dropped a stream,
# by name (the server does not import the backends)
UPSTREAM_ERRORS = {"RequestFailedError", "BrokenStreamError"}


def _search_error(exc: Exception) -> APIError:
    # an upstream that is down, hangs, keeps answering 500s or drops streams: a gateway's 502
    names = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, OSError | ConnectionError | TimeoutError) or names & UPSTREAM_ERRORS:
        return APIError(
            502, f"the generator failed: {type(exc).__name__}: {exc}", code="upstream_error"
        )
    return APIError(500, f"the search failed: {type(exc).__name__}: {exc}", code="search_error")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object: 413 past `limit` bytes (counted as it arrives), else 400."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(
            413, f"request body over server.max_body_bytes={limit}", code="body_too_large"
        )
    data = bytearray()
    async for part in request.stream():
        data += part
        if len(data) > limit:
            raise APIError(
                413, f"request body over server.max_body_bytes={limit}", code="body_too_large"
            )
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise bad(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad("the body must be a JSON object", code="invalid_json")
    return body


def _check_fields(body: Mapping[str, Any]) -> None:
    n = body.get("n", 1)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise bad(f"n must be an integer >= 1, got {n!r}", param="n")
    for key in ("stream",):
        if key in body and body[key] is not None and not isinstance(body[key], bool):
            raise bad(f"{key} must be true or false", param=key)
    stop = body.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise bad("stop must be a string or a list of strings", param="stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise bad("seed must be an integer >= 0", param="seed")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise bad("stream_options must be an object", param="stream_options")


def create_app(state: ServerState) -> FastAPI:
    """The server's FastAPI app over `state` (its generator, limits, keys and metrics)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for task in list(state.tasks):  # graceful shutdown: uvicorn waited; the rest cancel
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)

    app = FastAPI(title="reason-serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.reasoning = state
    if not hasattr(state, "solve"):
        state.solve = solve_problem  # type: ignore[attr-defined]

    def answer_error(exc: APIError, endpoint: str = "") -> JSONResponse:
        if exc.status in (401, 413, 429):
            state.metrics.rejections.labels(str(exc.code or exc.status)).inc()
        state.metrics.requests.labels(str(exc.status), "", endpoint).inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return answer_error(exc, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}"), 500)

    def guard(request: Request) -> None:
        check_key(state.keys, request.headers)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "in_flight": state.admission.in_flight,
            "queued": state.admission.waiting,
        }

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        guard(request)
        return Response(state.metrics.text(), media_type=state.metrics.content_type)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        guard(request)
        names = [*state.served, *(f"{s}/{m}" for s in state.searches for m in state.served)]
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "reasoning-toolkit"}
                for n in names
            ],
        }

    def trace_of(tid: str) -> dict[str, Any]:
        trace = state.traces.get(tid)
        if trace is None:
            raise APIError(
                404,
                f"no trace {tid!r} here (server.traces keeps the latest {state.server.traces})",
                code="trace_not_found",
            )
        return trace

    @app.get("/v1/traces/{tid}")
    async def trace(request: Request, tid: str, format: str = "json") -> Response:
        guard(request)
        if format == "html":
            return await trace_view(request, tid)
        return JSONResponse(trace_of(tid))

    @app.get("/v1/traces/{tid}/view")
    async def trace_view(request: Request, tid: str) -> Response:
        guard(request)
        from evals.viewer.page import trace_page

        return HTMLResponse(trace_page(trace_of(tid)))

    async def solve_endpoint(request: Request, kind: str) -> Response:
        endpoint = request.url.path
        guard(request)
        body = await read_json(request, state.server.max_body_bytes)
        _check_fields(body)
        method = method_of(
            body,
            request.headers,
            served=state.served,
            default_search=state.default_search,
            sampling_keys=state.sampling_keys,
        )
        pid = _problem_id(body, kind)
        try:
            if kind == "chat":
                problem = chat_problem(
                    body.get("messages"),
                    tools=body.get("tools"),
                    tool_choice=body.get("tool_choice"),
                    id=pid,
                )
            else:
                prompt = body.get("prompt")
                if isinstance(prompt, list) and len(prompt) == 1:
                    prompt = prompt[0]
                if not isinstance(prompt, str):
                    raise ValueError("prompt must be a string")
                problem = completion_problem(prompt, id=pid)
        except ValueError as exc:
            text = str(exc)
            raise bad(text, param=text.split(" ", 1)[0]) from None
        choices = int(body.get("n") or 1)
        plan = state.plan(method, choices=choices)
        exchange = Exchange(state, plan, problem, body, kind)
        if body.get("stream"):
            if state.admission.full():
                async with state.admission.slot():  # raises the 429
                    pass
            return StreamingResponse(
                stream(exchange, endpoint),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        async with state.admission.slot():
            exchange.admitted()
            exchange.start()
            watch = asyncio.ensure_future(_until_disconnected(request))
            results = asyncio.ensure_future(exchange.results())
            try:
                await asyncio.wait({watch, results}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watch.cancel()
                if not results.done():  # the client left: its search stops
                    exchange.cancel()
                    results.cancel()
                    state.metrics.disconnects.inc()
            if results.cancelled():
                return Response(status_code=499)
            choices_out, ledger = exchange.finish(results.result())
        state.metrics.requests.labels("200", plan.controller, endpoint).inc()
        return JSONResponse(exchange.response(choices_out, ledger))

    async def stream(exchange: Exchange, endpoint: str) -> AsyncIterator[bytes]:
        """SSE: the role, progress (tokens, status), the answer, finish, usage, [DONE]."""
        kind = "chat.completion.chunk" if exchange.kind == "chat" else "text_completion"
        rid, model, created = exchange.rid, exchange.model, exchange.created

        def make(i: int = 0, **kw: Any) -> bytes:
            return sse(chunk(rid, model, created, index=i, object_=kind, **kw))

        opts = exchange.body.get("stream_options") or {}
        streamed: dict[int, str] = {}  # per choice: the content already sent as tokens
        try:
            async with state.admission.slot():
                if exchange.kind == "chat":
                    for i in range(exchange.choices):
                        yield make(i, delta={"role": "assistant", "content": ""})
                exchange.admitted()
                feed = ProgressFeed() if _takes_feed(state.solve) else None
                exchange.start(feed)
                if feed is None:
                    # a solve function that takes no feed (a test's, a wrapper's): one status
                    # chunk now, the answer at the end
                    yield make(
                        delta={},
                        extra={
                            "reasoning_status": {
                                "event": "started",
                                "search": exchange.plan.controller,
                            }
                        },
                    )
                else:
                    with contextlib.suppress(TimeoutError):  # past it: the answer, cut
                        async with asyncio.timeout(exchange.deadline_s):
                            async for data in progress(exchange, feed, streamed):
                                yield data
                results = await exchange.results()
                choices, ledger = exchange.finish(results)
                for c in choices:
                    i = c["index"]
                    if c["reasoning"] and exchange.kind == "chat" and i not in streamed:
                        yield make(
                            i,
                            delta={
                                "reasoning_content": c["reasoning"],
                                "reasoning": c["reasoning"],
                            },
                        )
                    content = c["content"] or ""
                    rest = _unsent(content, streamed.get(i, ""))
                    if rest:
                        yield make(i, delta={"content": rest})
                    if c["tool_calls"] and exchange.kind == "chat":
                        calls = [dict(call, index=k) for k, call in enumerate(c["tool_calls"])]
                        yield make(i, delta={"tool_calls": calls})
                    extra = {"cut": c["cut"], "answer": c["answer"]}
                    if i in streamed and not content.lstrip().startswith(streamed[i].lstrip()):
                        extra["content"] = content  # the streamed tokens were not the answer
                    yield make(i, delta={}, finish_reason=c["finish_reason"], extra=extra)
                if opts.get("include_usage"):
                    last = chunk(rid, model, created, object_=kind)
                    last["choices"] = []
                    last["usage"] = usage(ledger, choices=len(choices))
                    yield sse(last)
            state.metrics.requests.labels("200", exchange.plan.controller, endpoint).inc()
        except APIError as exc:  # after the headers: the error as an event, then the end
            state.metrics.requests.labels(str(exc.status), exchange.plan.controller, endpoint).inc()
            yield sse(exc.body())
        except (asyncio.CancelledError, GeneratorExit):
            state.metrics.disconnects.inc()
            raise
        finally:
            exchange.cancel()  # a client that left cancels its search (no-op when done)
        yield sse("[DONE]")

    async def progress(
        exchange: Exchange, feed: Any, streamed: dict[int, str]
    ) -> AsyncIterator[bytes]:
        """Follow choice 0's feed: tokens as reasoning deltas (inside thinking, or any token
        of a search, whose leading chain is not yet the answer) or as content (one decoded
        path outside thinking); status items as `reasoning_status` chunks."""
        kind = "chat.completion.chunk" if exchange.kind == "chat" else "text_completion"

        def emit(**fields: Any) -> bytes:
            made = chunk(exchange.rid, exchange.model, exchange.created, object_=kind, **fields)
            return sse(made)

        thinking = getattr(state.generator, "thinking", None)
        head = thinking.open if thinking is not None and thinking.forced else ""
        tracker = thinking.tracker(head) if thinking is not None else None
        sent: list[str] = []  # content pieces, joined once at the end (no per-token copies)
        try:
            async for item in feed:
                if item.kind == "token" and item.text:
                    inside = tracker is not None and tracker.feed(item.text)
                    if (
                        exchange.plan.single_path
                        and not inside
                        and (tracker is None or tracker.closed)
                    ):
                        piece = item.text
                        if thinking is not None and thinking.close in item.text:
                            piece = item.text.split(thinking.close, 1)[1]
                        sent.append(piece)
                        if piece:
                            yield emit(delta={"content": piece})
                    elif exchange.kind == "chat":
                        yield emit(delta={"reasoning_content": item.text, "reasoning": item.text})
                elif item.kind == "status":
                    yield emit(delta={}, extra={"reasoning_status": dict(item.fields)})
        finally:
            if sent:
                streamed[0] = streamed.get(0, "") + "".join(sent)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await solve_endpoint(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await solve_endpoint(request, "completion")

    return app


async def _until_disconnected(request: Request) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(0.2)
