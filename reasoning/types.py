"""The data model every controller, backend and verifier shares.

`Chain` is immutable on purpose: controllers fork solutions constantly (particles, beams, A*
nodes), and sharing a frozen prefix is both cheaper and safer than copying mutable lists.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol, cast, runtime_checkable

STEP_DELIMITER = "\n\n"

_chain_ids = itertools.count()


def _next_chain_id() -> str:
    return f"c{next(_chain_ids)}"


class FinishReason(StrEnum):
    """Why a chain (or one of its steps) stopped growing: one vocabulary for every controller."""

    EOS = "eos"  # the model ended the text
    STOP = "stop"  # a stop string ended a whole sample
    LENGTH = "length"  # the per-sample or per-step token cap
    ABORT = "abort"  # the engine aborted the request
    BUDGET = "budget"  # the Context clamped the call to what the budget had left
    EMPTY = "empty"  # a step with no text
    BOXED = "boxed"  # a step wrote the final \\boxed{} answer
    MAX_STEPS = "max_steps"  # the step cap

    @classmethod
    def of(cls, raw: str | None, stop: str | None = None) -> FinishReason:
        """A backend's (or an old cache file's) raw reason as the enum.

        Engines and OpenAI-compatible servers say "stop" for both EOS and a stop string; the
        stop string hit (`stop`, None for EOS or a stop token id) tells them apart. A reason no
        backend should send (None, a server's own "content_filter") means the sample did not
        finish: ABORT.
        """
        if raw == "stop":
            return cls.EOS if stop is None else cls.STOP
        try:
            return cls(raw)
        except ValueError:
            return cls.ABORT


class EventKind(StrEnum):
    """What adaptive generation did to a problem's samples (`Context.record`): one vocabulary
    for the trace (`details.events`, each {"event": kind, ...}) and the runner's counts."""

    TRIM = "trim"  # a trimmer cut a sample's thinking and forced the answer
    EXTEND = "extend"  # a trimmer made a sample think on past an early end of thinking
    PROBE_FAILED = "probe_failed"  # a trimmer's side question could not run
    FORK = "fork"  # a rollout forked into concurrent threads
    JOIN = "join"  # threads merged back into their rollout
    ANSWER = "answer"  # a Hogwild worker committed a boxed answer
    COLLAB_CHECK = "collab_check"  # a Hogwild worker was asked to check the others
    FINISHER = "finisher"  # a forced-answer call after the rollout ended without one
    FALLBACK = "fallback"  # a thread policy could not parse its plan and decoded on
    NOT_EXPANDED = "not_expanded"  # APR: a spawn call written where spawning is not allowed
    DROPPED_CHILDREN = "dropped_children"  # APR: a spawn asked for more children than allowed
    DUPLICATE_OUTLINE_IDS = "duplicate_outline_ids"  # ThreadWeaver: an outline id repeated
    HYPER = "hyper"  # one HyPER control decision
    # the Context cut what a generator delivered past what was asked (a sample over its
    # max_tokens, more samples than n): reason over_max_tokens | extra_samples
    CLIPPED = "clipped"
    EMPTY_RESPONSE = "empty_response"  # a generator call returned no sample at all
    # an adaptive rule stopped drawing samples (adaptive_sc, deepconf): why, after how many,
    # and how many in-flight samples it aborted
    EARLY_STOP = "early_stop"
    SAMPLE_CUT = "sample_cut"  # a per-token rule ended one sample as it decoded (DeepConf online)


@dataclass(frozen=True)
class Problem:
    """One question to solve; `answer` is the gold answer when known (None at inference).

    A chat problem (`reasoning.chat.chat_problem`) also carries its whole conversation, tools
    and tool choice, so rendering, cache keys and votes see them; its `question` is the last
    user message, for display and grading. A raw completion problem carries `prompt`, sent as
    it is (no chat template). Plain problems leave all four None.
    """

    id: str
    question: str
    answer: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # OpenAI-style messages (validated, content flattened to text) of a chat problem
    messages: tuple[Mapping[str, Any], ...] | None = None
    # OpenAI function tools offered to the model, and the client's tool_choice
    tools: tuple[Mapping[str, Any], ...] | None = None
    tool_choice: Any = None
    prompt: str | None = None  # a raw completion prompt, rendered without a template


@dataclass(frozen=True)
class Chain:
    """A partial or complete solution: steps without delimiters, plus what we know about them."""

    steps: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    tokens: int = 0
    finished: bool = False
    finish_reason: FinishReason | None = None
    parent: str | None = None
    logprobs: tuple[float, ...] | None = None  # sampled-token logprobs of all steps, in order
    # per generated token, the logprobs of the top-k alternatives (when sampled with logprobs=k)
    top_logprobs: tuple[tuple[float, ...], ...] | None = None
    id: str = field(default_factory=_next_chain_id)
    # what joins the steps: "\n\n" for step-level searches; "" for chunked decoding, whose
    # steps are token chunks that continue each other (docs/adaptive-generation.md)
    delimiter: str = STEP_DELIMITER
    # the generated token ids of all steps, in order, when known: a chunked chain continues from
    # them exactly instead of from re-tokenized text
    token_ids: tuple[int, ...] | None = None

    @property
    def text(self) -> str:
        return self.delimiter.join(self.steps)

    def extend(
        self,
        step: str,
        *,
        tokens: int = 0,
        score: float | None = None,
        finished: bool = False,
        finish_reason: FinishReason | None = None,
        logprobs: tuple[float, ...] | None = None,
        top_logprobs: tuple[tuple[float, ...], ...] | None = None,
        token_ids: tuple[int, ...] | None = None,
    ) -> Chain:
        """A child chain with one more step; the parent stays untouched."""
        merged = None
        if logprobs is not None or self.logprobs is not None:
            merged = (self.logprobs or ()) + (logprobs or ())
        merged_top = None
        if top_logprobs is not None or self.top_logprobs is not None:
            merged_top = (self.top_logprobs or ()) + (top_logprobs or ())
        merged_ids = None
        if token_ids is not None and (self.token_ids is not None or not self.steps):
            merged_ids = (self.token_ids or ()) + token_ids
        return Chain(
            steps=(*self.steps, step),
            scores=self.scores if score is None else (*self.scores, score),
            tokens=self.tokens + tokens,
            finished=finished,
            finish_reason=finish_reason,
            parent=self.id,
            logprobs=merged,
            top_logprobs=merged_top,
            delimiter=self.delimiter,
            token_ids=merged_ids,
        )

    def with_scores(self, scores: tuple[float, ...] | list[float]) -> Chain:
        return replace(self, scores=tuple(scores))


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of one generator call (one prompt, `n` samples)."""

    temperature: float = 0.8
    top_p: float = 1.0
    max_tokens: int = 1024
    stop: tuple[str, ...] = ()
    n: int = 1
    seed: int | None = None
    logprobs: int | None = None  # None: off; 0: sampled token only; k: plus top-k alternatives
    # the logprobs of exactly these token ids at every generated position, whatever their rank
    # (a judge's or PRM's label tokens); when set, backends return no top-k alternatives
    logprob_token_ids: tuple[int, ...] | None = None
    # the text keeps special tokens (a thinking tag such as s1's "<|im_start|>answer" is one):
    # backends detokenize without skipping them
    keep_special_tokens: bool = False


@dataclass(frozen=True)
class TokenPrompt:
    """An exact prompt as token ids: sent as they are, never re-tokenized, so a continuation of
    sampled tokens (plus, perhaps, a forced one) is the same sequence a whole decode would see."""

    ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.ids:
            raise ValueError("a TokenPrompt needs at least one token id")


Prompt = str | TokenPrompt
"""What a backend is asked to continue: rendered text, or exact token ids."""

Messages = Sequence[Mapping[str, str]]
"""A chat as role/content messages (a side question, an injected cue); the Context renders it
with the model's chat template."""


@dataclass(frozen=True)
class Completion:
    """One sample returned by a generator, with the accounting the ledger needs.

    `finish_reason` is one of EOS, STOP (a stop string, named in `stop`), LENGTH (the call's
    `max_tokens`), ABORT, or BUDGET (a layer cut the sample for the budget: the Context clamped
    the call, or a trimmer's answer call was refused). A raw string (an old cache file, a
    server's "stop") is turned into the enum on construction (`FinishReason.of`).
    """

    text: str
    tokens: int
    finish_reason: FinishReason
    stop: str | None = None  # the stop string hit, None for EOS
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    logprobs: tuple[float, ...] | None = None
    # per generated token: {token text: logprob} of the top-k alternatives (Sampling.logprobs=k)
    top_logprobs: tuple[dict[str, float], ...] | None = None
    # per generated token: {token id: logprob} of each id in Sampling.logprob_token_ids
    token_id_logprobs: tuple[dict[int, float], ...] | None = None
    cached: bool = False  # replayed from the record/replay cache, no engine work
    token_ids: tuple[int, ...] | None = None  # the generated token ids, where the backend says
    # per generated token, the ids of the top-k alternatives, in the order of `top_logprobs`
    top_token_ids: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.finish_reason, FinishReason):
            object.__setattr__(
                self, "finish_reason", FinishReason.of(self.finish_reason, self.stop)
            )

    @classmethod
    def refusal(cls) -> Completion:
        """What a refused call gives a helper that does not raise (`Context.try_generate`): no
        text, no tokens, finish BUDGET. docs/data-model.md lists where it appears."""
        return cls(text="", tokens=0, finish_reason=FinishReason.BUDGET, token_ids=())

    @property
    def refused(self) -> bool:
        """The budget refused this call: nothing was generated."""
        return self.finish_reason == FinishReason.BUDGET and self.tokens == 0 and not self.text

    @property
    def hit_eos(self) -> bool:
        return self.finish_reason == FinishReason.EOS


@dataclass(frozen=True)
class Delta:
    """What one engine step added to a streamed sample; the last one carries `finish_reason`."""

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[dict[str, float], ...] | None = None
    top_token_ids: tuple[tuple[int, ...], ...] | None = None
    token_id_logprobs: tuple[dict[int, float], ...] | None = None
    finish_reason: FinishReason | None = None  # on the last delta only (see Completion)
    stop: str | None = None  # the stop string hit (None for EOS)
    prompt_tokens: int = 0  # on the first delta only
    cached_prompt_tokens: int = 0  # on the first delta only
    cached: bool = False  # replayed from the record/replay cache
    # tokens this delta delivered when the server sent no ids (its usage, else our tokenizer):
    # every delivered token is metered, whatever the server sends
    counted: int | None = None

    def __post_init__(self) -> None:
        if self.finish_reason is not None and not isinstance(self.finish_reason, FinishReason):
            object.__setattr__(
                self, "finish_reason", FinishReason.of(self.finish_reason, self.stop)
            )

    @property
    def tokens(self) -> int:
        """Tokens this delta delivered: its ids, or the count given for it when it has none."""
        return max(len(self.token_ids), self.counted or 0)


def chain_finish(
    completion: Completion,
    *,
    goes_on: Collection[FinishReason] = (),
    empty: bool = False,
    boxed: bool = False,
    last_step: bool = False,
) -> FinishReason | None:
    """Why the chain that `completion` ends (or extends) stopped; None when it goes on.

    The one mapping from a generation result to a chain's finish. A whole sample stops for its
    completion's own reason. A segment of a longer chain (a step, a chunk) goes on when its
    reason is one of `goes_on` (a step's delimiter is STOP; a chunk's cap is LENGTH or BUDGET),
    unless it is `empty` (no progress), holds the final `boxed` answer, or is the `last_step`
    the step cap allows, in that order.
    """
    reason = completion.finish_reason
    if reason not in goes_on:
        return reason
    if empty:
        return FinishReason.EMPTY
    if boxed:
        return FinishReason.BOXED
    if last_step:
        return FinishReason.MAX_STEPS
    return None


@runtime_checkable
class Generator(Protocol):
    """A text generator: renders prompts and samples continuations of them."""

    name: str

    def render(self, problem: Problem, chain: Chain | None = None) -> str:
        """The prompt for `problem` with `chain`'s steps already written by the assistant."""
        ...

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]: ...


@runtime_checkable
class StreamingGenerator(Generator, Protocol):
    """A generator that also streams, tokenizes and renders chats: what adaptive controllers
    (thought trimming, HyPER) need. Both backends and the record/replay cache provide it."""

    def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        """One sample (`sampling.n` must be 1), delta by delta. Closing the iterator early
        (`aclose`, or leaving an `async for`) aborts the request in the engine."""
        ...

    def tokenize(self, text: str) -> tuple[int, ...]:
        """Token ids of `text` as part of a prompt (no special tokens added)."""
        ...

    def detokenize(self, ids: Sequence[int]) -> str: ...

    def chat(self, messages: Messages) -> str:
        """`messages` rendered with the model's chat template, the assistant's turn open."""
        ...


class StepScores(list[list[float]]):
    """What `Verifier.score` returns: one list of per-step scores in [0, 1] per chain.

    A plain list works too; this subclass also carries what the call cost, so the Context can
    meter it without shared mutable state on the verifier (calls run concurrently).
    """

    def __init__(self, scores: Any = (), *, tokens: int = 0, cached: bool = False) -> None:
        super().__init__(scores)
        self.tokens = tokens  # tokens the verifier model read or wrote for this call
        self.cached = cached  # served from the record/replay cache


@runtime_checkable
class Verifier(Protocol):
    """Scores chains step by step: one list of floats in [0, 1] per chain (steps as the
    chain holds them: blank-line separated, see reasoning.steps)."""

    name: str

    async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]: ...


@runtime_checkable
class AnswerJudge(Protocol):
    """Extracts final answers and decides equivalence; shared by voting and grading.

    A judge may also offer `for_problem(problem) -> AnswerJudge`: the judge a search on that
    problem votes with (`judge_for`), for tasks where "the same answer" depends on the problem
    (two different Countdown expressions that both reach the target are one answer)."""

    def extract(self, text: str) -> str | None: ...

    async def equivalent(self, a: str, b: str) -> bool | None: ...


def judge_for(judge: AnswerJudge | None, problem: Problem) -> AnswerJudge | None:
    """`judge` bound to `problem` when it knows how (`for_problem`), else `judge` itself; the
    Context binds its judge once, so every vote on the problem uses the same equivalence. On a
    chat problem it is wrapped in `reasoning.chat.ReplyJudge`: samples vote by their tool calls
    (name and canonical arguments), else by answer, else by reply text."""
    bind = getattr(judge, "for_problem", None)
    bound = judge if bind is None else cast("AnswerJudge", bind(problem))
    if bound is None or problem.messages is None:
        return bound
    # a chat problem votes on its replies: tool calls, else the answer, else the reply text
    from reasoning.chat import ReplyJudge

    return ReplyJudge(bound, problem)
