"""The HTTP arm of the overhead benchmark: the toolkit's client against an instant server.

A local OpenAI-compatible stub (FastAPI + uvicorn in a child process on the loopback) answers
`/v1/completions` and `/v1/chat/completions` from `benchmarks/instant.py`'s InstantGenerator,
so a request costs the server a slice of a pre-tokenized script and the HTTP samples are the
in-process arm's samples. It answers as vLLM does for what our client asks
(`return_token_ids`: the sampled ids and the prompt's; `return_tokens_as_token_ids`: logprob
keys "token_id:N"; `stop_reason`; a usage chunk per streamed token with
`continuous_usage_stats`), one token per streamed chunk as an engine step sends it, and can log
every request body (JSON lines) so another client can replay them.

Three clients, each in a fresh child process, measured by their own process CPU (start-up:
imports, config, tokenizer, a first client and render; apart from the run) and peak resident
memory:

- the toolkit: the real `Runner` over `backend=openai` pointed at the stub (the controller's
  config as `reason` would build it; the instant verifier where a controller needs one);
- a minimal client: a plain asyncio loop over `openai.AsyncOpenAI` replaying the toolkit's
  logged requests (same prompts, n, max_tokens, stop, logprobs, stream, seeds), at most
  `backend.max_concurrency` at once;
- its_hub's client (`benchmarks/its_hub_client.py`, run with its own venv's python): its own
  self-consistency, beam search and particle filtering against the stub's chat endpoint, with
  a reward model that scores instantly, on the same problems and sample sizes.

    python benchmarks/overhead_http.py --problems 50 [--rounds 3] [--its-hub-python PY]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PLAIN_MODEL = "smollm2-135m"
THINK_MODEL = "smollm2-135m-think"
BEST_OF_8 = ["search=best_of_n", "search.n=8", "search.aggregate=majority"]
MAX_CONCURRENCY = 64  # backend.max_concurrency's default: the minimal client's cap too

# name -> (overrides, model, needs the instant verifier, streamed)
CONTROLLERS: dict[str, tuple[list[str], str, bool, bool]] = {
    "greedy": (["search=greedy"], PLAIN_MODEL, False, False),
    "best_of_n": (BEST_OF_8, PLAIN_MODEL, False, False),
    "beam": (["search=beam"], PLAIN_MODEL, True, False),
    "particle_filter": (["search=particle_filter"], PLAIN_MODEL, True, False),
    "trim_budget": (
        [*BEST_OF_8, "+trim=budget", "trim.max_think_tokens=160"],
        THINK_MODEL,
        False,
        True,
    ),
}
# its_hub's counterpart of each controller (benchmarks/its_hub_client.py), or why none
ITS_HUB: dict[str, str] = {
    "best_of_n": "self_consistency",
    "beam": "beam_search",
    "particle_filter": "particle_filtering",
}
ITS_HUB_MISSING = {
    "greedy": "its_hub has no greedy algorithm (one plain chat call is the minimal client's)",
    "trim_budget": "its_hub has no streamed thought trimming (its client never streams)",
}


# --- the stub ---------------------------------------------------------------------------------


def _thinking_of(model: str) -> Any:
    """The model config's thinking format, read from conf/model without Hydra."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "conf" / "model" / f"{model}.yaml")
    thinking = cfg.get("thinking")
    return None if thinking is None else OmegaConf.to_container(thinking)


class StubState:
    """The stub's generators (plain and thinking, picked by the request's model) and log."""

    def __init__(self, log_path: str | None = None) -> None:
        from benchmarks.instant import InstantGenerator

        self.generators = {
            PLAIN_MODEL: InstantGenerator(),
            THINK_MODEL: InstantGenerator(thinking=_thinking_of(THINK_MODEL)),
        }
        self.log_file: Any = None
        self.set_log(log_path)
        self._texts: dict[int, str] = {}

    def set_log(self, path: str | None) -> None:
        if self.log_file is not None:
            self.log_file.close()
        self.log_file = None if path is None else open(path, "a", encoding="utf-8")  # noqa: SIM115

    def log(self, route: str, body: dict[str, Any], tokens: int) -> None:
        if self.log_file is not None:
            line = json.dumps({"route": route, "body": body, "tokens": tokens})
            self.log_file.write(line + "\n")
            self.log_file.flush()

    def generator(self, model: str) -> Any:
        return self.generators[THINK_MODEL if "think" in str(model) else PLAIN_MODEL]

    def token_text(self, gen: Any, token: int) -> str:
        text = self._texts.get(token)
        if text is None:
            text = self._texts[token] = gen.renderer.detokenize([token])
        return text


def _sampling(body: dict[str, Any], *, chat: bool) -> Any:
    from reasoning.types import Sampling

    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    if chat:  # logprobs: bool, top_logprobs: int
        logprobs = int(body.get("top_logprobs") or 0) if body.get("logprobs") else None
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    else:
        logprobs = body.get("logprobs")
        max_tokens = body.get("max_tokens")
    return Sampling(
        temperature=float(
            body.get("temperature", 1.0) if body.get("temperature") is not None else 1.0
        ),
        max_tokens=int(max_tokens or 4096),
        stop=stop,
        n=int(body.get("n") or 1),
        seed=body.get("seed"),
        logprobs=None if logprobs is None else int(logprobs),
    )


def _prompt(gen: Any, raw: Any) -> tuple[Any, list[int]]:
    """The request's prompt as the generator takes it, and its token ids."""
    from reasoning.types import TokenPrompt

    if isinstance(raw, list) and raw and isinstance(raw[0], int):
        return TokenPrompt(tuple(raw)), list(raw)
    text = raw[0] if isinstance(raw, list) else str(raw)
    return text, list(gen.renderer.tokenize(text))


def _finish(completion: Any) -> tuple[str, str | None]:
    """vLLM's finish_reason and stop_reason of a completion."""
    from reasoning.types import FinishReason

    if completion.finish_reason == FinishReason.LENGTH:
        return "length", None
    return "stop", completion.stop


def _logprobs(
    state: StubState, gen: Any, c: Any, lo: int, hi: int, as_ids: bool
) -> dict[str, Any] | None:
    """The completions API's logprobs block for tokens lo:hi of a completion."""
    if c.logprobs is None:
        return None
    ids = c.token_ids[lo:hi]
    tokens = [f"token_id:{t}" if as_ids else state.token_text(gen, t) for t in ids]
    top = None
    if c.top_logprobs is not None:
        top = []
        for table, top_ids in zip(c.top_logprobs[lo:hi], c.top_token_ids[lo:hi], strict=True):
            values = list(table.values())
            if as_ids:
                top.append({f"token_id:{t}": v for t, v in zip(top_ids, values, strict=False)})
            else:
                top.append(dict(table))
    return {
        "tokens": tokens,
        "token_logprobs": list(c.logprobs[lo:hi]),
        "top_logprobs": top,
        "text_offset": [0] * len(ids),
    }


def make_app(state: StubState) -> Any:
    """The stub's FastAPI app. Its routes are plain Starlette endpoints (JSON in and out, no
    request models to validate or dependencies to resolve): the server's own cost stays small."""
    from fastapi import FastAPI
    from fastapi.responses import Response, StreamingResponse

    app = FastAPI()
    created = int(time.time())

    def dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"))

    async def models(request: Any) -> Response:
        data = [
            {"id": m, "object": "model", "created": created, "owned_by": "stub"}
            for m in state.generators
        ]
        return Response(dumps({"object": "list", "data": data}), media_type="application/json")

    async def set_log(request: Any) -> Response:
        state.set_log((await request.json()).get("path"))
        return Response("{}", media_type="application/json")

    async def completions(request: Any) -> Response:
        body = await request.json()
        gen = state.generator(body.get("model", ""))
        sampling = _sampling(body, chat=False)
        prompt, prompt_ids = _prompt(gen, body.get("prompt"))
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        with_ids = bool(body.get("return_token_ids"))
        if body.get("stream"):
            return StreamingResponse(
                _stream(state, gen, body, prompt, prompt_ids, sampling, as_ids, with_ids),
                media_type="text/event-stream",
            )
        completions = await gen.complete(prompt, sampling)
        choices = []
        for i, c in enumerate(completions):
            finish, stop = _finish(c)
            choice: dict[str, Any] = {
                "index": i,
                "text": c.text,
                "logprobs": _logprobs(state, gen, c, 0, c.tokens, as_ids),
                "finish_reason": finish,
                "stop_reason": stop,
            }
            if with_ids:
                choice["token_ids"] = list(c.token_ids)
                choice["prompt_token_ids"] = prompt_ids if i == 0 else None
            choices.append(choice)
        generated = sum(c.tokens for c in completions)
        state.log("completions", body, generated)
        return Response(
            dumps(
                {
                    "id": f"cmpl-{gen.calls}",
                    "object": "text_completion",
                    "created": created,
                    "model": body.get("model"),
                    "choices": choices,
                    "usage": {
                        "prompt_tokens": len(prompt_ids),
                        "completion_tokens": generated,
                        "total_tokens": len(prompt_ids) + generated,
                    },
                }
            ),
            media_type="application/json",
        )

    async def _stream(
        state: StubState,
        gen: Any,
        body: dict[str, Any],
        prompt: Any,
        prompt_ids: list[int],
        sampling: Any,
        as_ids: bool,
        with_ids: bool,
    ) -> Any:
        """One SSE chunk per token (vLLM's shape), a usage chunk at the end when asked."""
        from dataclasses import replace

        options = body.get("stream_options") or {}
        continuous = bool(options.get("continuous_usage_stats"))
        head = {
            "id": "cmpl-s",
            "object": "text_completion",
            "created": created,
            "model": body.get("model"),
        }
        total = 0  # tokens sent, logged however the stream ends (a client may close it)
        try:
            for i in range(sampling.n):
                one = replace(
                    sampling, n=1, seed=None if sampling.seed is None else sampling.seed + i
                )
                done = 0
                async for d in gen.stream(prompt, one):
                    done += 1
                    total += 1
                    choice: dict[str, Any] = {
                        "index": i,
                        "text": d.text,
                        "logprobs": None,
                        "finish_reason": None,
                        "stop_reason": None,
                    }
                    if d.logprobs is not None:
                        tid = d.token_ids[0]
                        top = None
                        if d.top_logprobs is not None:
                            values = list(d.top_logprobs[0].values())
                            top = [
                                {
                                    f"token_id:{t}": v
                                    for t, v in zip(d.top_token_ids[0], values, strict=False)
                                }
                                if as_ids
                                else dict(d.top_logprobs[0])
                            ]
                        choice["logprobs"] = {
                            "tokens": [f"token_id:{tid}" if as_ids else d.text],
                            "token_logprobs": list(d.logprobs),
                            "top_logprobs": top,
                            "text_offset": [0],
                        }
                    if d.finish_reason is not None:
                        choice["finish_reason"] = (
                            "length" if d.finish_reason == "length" else "stop"
                        )
                        choice["stop_reason"] = d.stop
                    if with_ids:
                        choice["token_ids"] = list(d.token_ids)
                        if done == 1:
                            choice["prompt_token_ids"] = prompt_ids
                    chunk: dict[str, Any] = {**head, "choices": [choice]}
                    if continuous:
                        chunk["usage"] = {
                            "prompt_tokens": len(prompt_ids),
                            "completion_tokens": done,
                            "total_tokens": len(prompt_ids) + done,
                        }
                    yield f"data: {dumps(chunk)}\n\n"
            if options.get("include_usage"):
                usage = {
                    "prompt_tokens": len(prompt_ids),
                    "completion_tokens": total,
                    "total_tokens": len(prompt_ids) + total,
                }
                yield f"data: {dumps({**head, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            state.log("completions", body, total)

    async def chat(request: Any) -> Response:
        body = await request.json()
        gen = state.generator(body.get("model", ""))
        sampling = _sampling(body, chat=True)
        # the prompt's text is not what decides the sample here (its seed is): no render
        completions = await gen.complete("x", sampling)
        choices = []
        for i, c in enumerate(completions):
            finish, stop = _finish(c)
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": None,
                    "finish_reason": finish,
                    "stop_reason": stop,
                }
            )
        generated = sum(c.tokens for c in completions)
        state.log("chat", body, generated)
        return Response(
            dumps(
                {
                    "id": f"chatcmpl-{gen.calls}",
                    "object": "chat.completion",
                    "created": created,
                    "model": body.get("model"),
                    "choices": choices,
                    "usage": {
                        "prompt_tokens": 0,
                        "completion_tokens": generated,
                        "total_tokens": generated,
                    },
                }
            ),
            media_type="application/json",
        )

    app.add_route("/v1/models", models, methods=["GET"])
    app.add_route("/_log", set_log, methods=["POST"])
    app.add_route("/v1/completions", completions, methods=["POST"])
    app.add_route("/v1/chat/completions", chat, methods=["POST"])
    return app


def _die_with_parent(parent: int, max_life_s: float) -> None:
    """The stub ends when its parent does (Linux: a signal at its death; else a poll) or
    when its lifetime is spent."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the poll below does it
        pass
    import threading

    def watch() -> None:
        end = time.monotonic() + max_life_s
        while time.monotonic() < end and os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def serve_stub(port: int, log_path: str | None, parent: int, max_life_s: float) -> None:
    import uvicorn

    _die_with_parent(parent, max_life_s)
    state = StubState(log_path)
    uvicorn.run(make_app(state), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stub:
    """The stub in a child process: `url`, `set_log(path)`, `close()`."""

    def __init__(self, *, max_life_s: float = 3600.0, start_timeout_s: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--stub",
                str(self.port),
                "--parent",
                str(os.getpid()),
                "--max-life-s",
                str(max_life_s),
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"the stub did not start on {self.url}") from None
                time.sleep(0.1)

    def set_log(self, path: str | Path | None) -> None:
        data = json.dumps({"path": None if path is None else str(path)}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/_log",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running_stub(**kwargs: Any) -> Iterator[Stub]:
    stub = Stub(**kwargs)
    try:
        yield stub
    finally:
        stub.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    text = Path(path).read_text(encoding="utf-8") if Path(path).exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- the children -----------------------------------------------------------------------------


def _usage(startup: float, t0: float) -> dict[str, float]:
    return {
        "startup_cpu_s": startup,
        "cpu_s": time.process_time() - t0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _warm(render: Any = None) -> None:
    """One-time costs paid before the start-up mark, so the run's CPU is per token and per
    call: the client's imports and its transport (imported when a first client is built) and,
    for the toolkit, the chat template's compilation (on its first render)."""
    from openai import AsyncOpenAI

    AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="EMPTY")
    if render is not None:
        render()


def toolkit_child(
    name: str, url: str, problems: int, profile: str | None, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """One controller through the real Runner over `backend=openai` at `url` (`extra`:
    overrides after the controller's own)."""
    from benchmarks.instant import instant_runner
    from evals.experiment import load_from_config
    from reasoning.build import build_generator, compose_config

    overrides, model, needs_verifier, _ = CONTROLLERS[name]
    cfg = compose_config(
        [
            f"model={model}",
            *overrides,
            "backend=openai",
            f"backend.base_urls=['{url}']",
            f"backend.served_model={model}",
            f"backend.max_concurrency={MAX_CONCURRENCY}",
            "dataset=arith",
            f"dataset.arith.n={problems}",
            "progress=false",
            *extra,
        ]
    )
    generator = build_generator(cfg)
    runner = instant_runner(cfg, generator, f"overhead-http-{name}", needs_verifier)
    todo = load_from_config(cfg)
    _warm(lambda: generator.render(todo[0]))
    startup = time.process_time()  # the process's CPU so far: imports, config, tokenizer
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU, not the waits on the stub
        profiler.enable()
    t0 = time.process_time()
    summary = asyncio.run(runner.run(todo))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    led = summary["ledger"]
    return {
        "tokens": int(led["generated_tokens"]),
        "calls": int(led["generator_calls"]),
        "problems": summary["problems"],
        "errors": summary["errors"],
        **_usage(startup, t0),
    }


async def _replay(url: str, requests: list[dict[str, Any]], cap: int) -> tuple[int, int]:
    """Send every logged completions request (at most `cap` at once); (tokens, calls)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0)
    gate = asyncio.Semaphore(cap)
    known = {
        "model",
        "prompt",
        "n",
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "seed",
        "logprobs",
        "stream",
        "stream_options",
    }

    async def one(body: dict[str, Any]) -> int:
        kwargs = {k: v for k, v in body.items() if k in known}
        extra = {k: v for k, v in body.items() if k not in known}
        async with gate:
            response = await client.completions.create(**kwargs, extra_body=extra or None)
            if not body.get("stream"):
                _ = [c.text for c in response.choices]
                return int(response.usage.completion_tokens)
            pieces: list[str] = []
            tokens = 0
            async for chunk in response:
                if chunk.choices:
                    pieces.append(chunk.choices[0].text)
                if chunk.usage is not None:
                    tokens = int(chunk.usage.completion_tokens)
            "".join(pieces)
            return tokens

    counts = await asyncio.gather(*(one(b) for b in requests))
    await client.close()
    return sum(counts), len(counts)


def minimal_child(url: str, log: str) -> dict[str, Any]:
    """The logged requests replayed by a plain asyncio loop over the `openai` SDK."""
    _warm()
    requests = [r["body"] for r in read_log(log) if r["route"] == "completions"]
    startup = time.process_time()
    t0 = time.process_time()
    tokens, calls = asyncio.run(_replay(url, requests, MAX_CONCURRENCY))
    return {"tokens": tokens, "calls": calls, **_usage(startup, t0)}


# --- the parent -------------------------------------------------------------------------------


def _run_child(argv: list[str], timeout_s: float = 1800) -> dict[str, Any]:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
            timeout=timeout_s,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:g} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr or done.stdout or f"exit {done.returncode}")[-1500:]}
    return json.loads(lines[-1])


def _row(
    controller: str, client: str, streamed: bool, runs: list[dict[str, Any]], note: str = ""
) -> dict[str, Any]:
    """The median of the rounds as one row, with the per-token and per-call figures."""
    good = [r for r in runs if "error" not in r]
    row: dict[str, Any] = {
        "arm": "http",
        "controller": controller,
        "client": client,
        "streamed": streamed,
        "note": note,
    }
    if not good:
        row["note"] = (note + "; " if note else "") + (
            runs[0]["error"].strip().splitlines()[-1] if runs else "not run"
        )
        row["error"] = runs[0]["error"] if runs else "not run"
        return row
    for key in ("cpu_s", "startup_cpu_s", "peak_rss_mb"):
        row[key] = statistics.median(r[key] for r in good)
    row["tokens"] = int(statistics.median(r["tokens"] for r in good))
    row["calls"] = int(statistics.median(r["calls"] for r in good))
    cpu, tokens, calls = row["cpu_s"], row["tokens"], row["calls"]
    row["us_per_token"] = 1e6 * cpu / tokens if tokens else None
    row["ms_per_call"] = 1e3 * cpu / calls if calls else None
    row["tokens_per_cpu_s"] = tokens / cpu if cpu > 0 else None
    failed = [r for r in good if r.get("errors")]
    if failed:
        first = f" (first: {failed[0]['first_error']})" if failed[0].get("first_error") else ""
        row["note"] = (note + "; " if note else "") + f"{failed[0]['errors']} problem errors{first}"
    return row


def _ratio(a: dict[str, Any], b: dict[str, Any] | None) -> float | None:
    x, y = a.get("us_per_token"), (b or {}).get("us_per_token")
    return x / y if x and y else None


def http_rows(
    *,
    problems: int,
    rounds: int,
    its_hub_python: str | None,
    profile_dir: Path | None,
    controllers: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Every client on every controller, the clients alternating `rounds` times (medians)."""
    names = list(controllers or CONTROLLERS)
    work = Path(tempfile.mkdtemp(prefix="overhead-http-"))
    questions = work / "problems.json"
    questions.write_text(json.dumps(_questions(problems)))
    me = [sys.executable, __file__]
    rows: list[dict[str, Any]] = []
    with running_stub() as stub:
        for name in names:
            _, model, _, streamed = CONTROLLERS[name]
            runs: dict[str, list[dict[str, Any]]] = {"toolkit": [], "minimal": [], "its_hub": []}
            for k in range(rounds):
                log = work / f"{name}-{k}.jsonl"
                stub.set_log(log)
                argv = [
                    *me,
                    "--child-toolkit",
                    name,
                    "--url",
                    stub.url,
                    "--problems",
                    str(problems),
                ]
                if profile_dir is not None and k == 0:
                    profile_dir.mkdir(parents=True, exist_ok=True)
                    argv += ["--profile", str(profile_dir / f"http-{name}.prof")]
                runs["toolkit"].append(_run_child(argv))
                stub.set_log(None)
                runs["minimal"].append(
                    _run_child([*me, "--child-minimal", str(log), "--url", stub.url])
                )
                if its_hub_python and name in ITS_HUB:
                    hub_log = work / f"{name}-{k}-its_hub.jsonl"
                    stub.set_log(hub_log)
                    result = _run_child(
                        [
                            its_hub_python,
                            str(REPO / "benchmarks" / "its_hub_client.py"),
                            "--algorithm",
                            ITS_HUB[name],
                            "--url",
                            stub.url,
                            "--model",
                            model,
                            "--problems",
                            str(questions),
                            "--budget",
                            "8",
                        ]
                    )
                    stub.set_log(None)
                    if "error" not in result and "skipped" not in result:
                        served = read_log(hub_log)  # the stub's count of what it sent
                        result.setdefault("tokens", sum(r["tokens"] for r in served))
                        result.setdefault("calls", len(served))
                    runs["its_hub"].append(result)
            toolkit = _row(name, "toolkit", streamed, runs["toolkit"])
            minimal = _row(
                name, "minimal", streamed, runs["minimal"], "the toolkit's logged requests replayed"
            )
            if name not in ITS_HUB:
                hub = _row(
                    name, "its_hub", streamed, [], ITS_HUB_MISSING.get(name, "no counterpart")
                )
                hub.pop("error", None)
                hub["note"] = ITS_HUB_MISSING.get(name, "no counterpart")
            elif not its_hub_python:
                hub = {
                    "arm": "http",
                    "controller": name,
                    "client": "its_hub",
                    "streamed": streamed,
                    "note": "not run (no --its-hub-python)",
                }
            else:
                skipped = [r for r in runs["its_hub"] if "skipped" in r]
                hub = (
                    {
                        "arm": "http",
                        "controller": name,
                        "client": "its_hub",
                        "streamed": streamed,
                        "note": skipped[0]["skipped"],
                    }
                    if skipped
                    else _row(
                        name,
                        "its_hub",
                        streamed,
                        runs["its_hub"],
                        f"its_hub {ITS_HUB[name]}, budget 8",
                    )
                )
            toolkit["ratio_vs_minimal"] = _ratio(toolkit, minimal)
            toolkit["ratio_vs_its_hub"] = _ratio(toolkit, hub)
            rows += [toolkit, minimal, hub]
    return rows


def _questions(problems: int) -> list[str]:
    """The problems the toolkit's children run (the same dataset config)."""
    from evals.experiment import load_from_config
    from reasoning.build import compose_config

    cfg = compose_config(["dataset=arith", f"dataset.arith.n={problems}"])
    return [p.question for p in load_from_config(cfg)]


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def http_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| controller | client | tokens | calls | CPU s | start-up CPU s | us/token | "
        "ms/call | tokens per CPU s | peak RSS MB | vs minimal | vs its_hub | note |"
    )
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        out.append(
            f"| {r['controller']}{' (streamed)' if r.get('streamed') else ''} | {r['client']} | "
            f"{_fmt(r.get('tokens'), 'd')} | {_fmt(r.get('calls'), 'd')} | "
            f"{_fmt(r.get('cpu_s'), '.2f')} | {_fmt(r.get('startup_cpu_s'), '.2f')} | "
            f"{_fmt(r.get('us_per_token'), '.2f')} | {_fmt(r.get('ms_per_call'), '.3f')} | "
            f"{_fmt(r.get('tokens_per_cpu_s'), ',.0f')} | {_fmt(r.get('peak_rss_mb'), '.0f')} | "
            f"{_fmt(r.get('ratio_vs_minimal'), '.2f')} | {_fmt(r.get('ratio_vs_its_hub'), '.2f')}"
            f" | {r.get('note') or ''} |"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated controllers")
    parser.add_argument("--its-hub-python", default=None, help="its_hub's venv python")
    parser.add_argument("--profile", default=None, help="write the toolkit's cProfile here")
    parser.add_argument("--json", default=None, help="also write the rows here")
    # the children and the stub
    parser.add_argument("--stub", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--max-life-s", type=float, default=3600.0, help=argparse.SUPPRESS)
    parser.add_argument("--child-toolkit", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-minimal", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--override", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stub is not None:
        serve_stub(args.stub, None, args.parent or os.getppid(), args.max_life_s)
        return 0
    if args.child_toolkit is not None:
        row = toolkit_child(
            args.child_toolkit, args.url, args.problems, args.profile, args.override
        )
        print(json.dumps(row))
        return 0
    if args.child_minimal is not None:
        print(json.dumps(minimal_child(args.url, args.child_minimal)))
        return 0
    names = [n for n in args.only.split(",") if n] or list(CONTROLLERS)
    unknown = sorted(set(names) - set(CONTROLLERS))
    if unknown:
        parser.error(f"unknown controllers {unknown}; known: {sorted(CONTROLLERS)}")
    rows = http_rows(
        problems=args.problems,
        rounds=args.rounds,
        its_hub_python=args.its_hub_python,
        profile_dir=Path(args.profile) if args.profile else None,
        controllers=names,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    print(http_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
