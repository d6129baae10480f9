"""The Context: the only door from a controller to the generator and the verifier.

Metering and budget enforcement live here and nowhere else, so no controller can spend
compute the ledger does not see, and every controller stops on the same limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, cast

from reasoning.budget import LIMITS, SCORING_LIMITS, Budget, BudgetExhausted, Ledger
from reasoning.progress import ProgressFeed, Publisher
from reasoning.tree import SearchTree
from reasoning.types import (
    AnswerJudge,
    Chain,
    Completion,
    Delta,
    EventKind,
    FinishReason,
    Generator,
    Messages,
    Problem,
    Prompt,
    Sampling,
    StreamingGenerator,
    TokenPrompt,
    Verifier,
    judge_for,
)

if TYPE_CHECKING:
    from reasoning.outcome import Outcome
    from reasoning.prompts import ThinkingFormat

# Calls in a row that may return no sample at all before the problem fails (each is metered
# as one call and, when it starts one, one sample, so a sample budget binds before this does).
MAX_EMPTY_RESPONSES = 3


class EmptyResponseError(RuntimeError):
    """A generator returned no sample for `MAX_EMPTY_RESPONSES` calls in a row: the problem
    fails with this error instead of its controller asking again for ever."""


class BrokenSampleError(RuntimeError):
    """A generator ended a sample with finish `abort` that nobody asked to stop (a stream the
    server dropped, an engine that aborted the request): an error of that sample, never a
    finished sample to grade."""


class Sampler(Protocol):
    """Takes over a controller's own samples (calls without an explicit prompt): a thought
    trimmer streams each one, watches it and may cut it (see docs/thought-trimming.md)."""

    name: str

    async def sample(
        self, ctx: Context, prompt: Prompt, sampling: Sampling
    ) -> list[Completion]: ...


class Context:
    """Per-problem handle: generator, verifier, budget + ledger, search tree, seeded RNG."""

    def __init__(
        self,
        problem: Problem,
        generator: Generator,
        *,
        verifier: Verifier | None = None,
        judge: AnswerJudge | None = None,
        budget: Budget | None = None,
        seed: int = 0,
        sampler: Sampler | None = None,
        feed: ProgressFeed | None = None,
    ) -> None:
        self.problem = problem
        self.generator = generator
        self.verifier = verifier
        self.judge = judge_for(judge, problem)  # votes on this problem: its own equivalence
        self.budget = budget or Budget()
        self.ledger = Ledger()
        self.tree = SearchTree()
        self.seed = seed
        self.rng = random.Random(f"{seed}:{problem.id}")
        self.stopped_by: str | None = None
        self.sampler = sampler
        # what adaptive generation did to this problem's samples (cuts, forks), for the trace:
        # written only through `record`, read through `events`
        self._events: list[dict[str, Any]] = []
        self._started = time.monotonic()
        self._reserved_tokens = 0  # held by generator calls in flight (see _fit)
        self._reserved_samples = 0
        self._released = asyncio.Event()  # set whenever a call in flight returns its reservation
        # what the search is doing, for a client watching it (reasoning/progress.py); every
        # hook is one `if` on this, so a Context without a feed pays nothing else
        self.progress = Publisher(feed, self, self._started) if feed is not None else None

    def record(self, kind: EventKind, **fields: Any) -> None:
        """Note one adaptive-generation event; the trace holds it as {"event": kind, **fields}."""
        self._events.append({"event": EventKind(kind).value, **fields})
        if self.progress is not None:
            self.progress.status(EventKind(kind).value)

    def report_progress(self, *, step: int | None = None, chains_alive: int | None = None) -> None:
        """A controller that knows its step or its live chains better than the Context's
        guess (the depth of the chains its calls continue; the samples in flight) says so;
        later status items carry these values. Free without a feed."""
        if self.progress is None:
            return
        declared = {"step": step, "chains_alive": chains_alive}
        self.progress.declared.update({k: v for k, v in declared.items() if v is not None})
        self.progress.status()

    @property
    def events(self) -> tuple[Mapping[str, Any], ...]:
        """The events recorded so far, read-only (the runner counts them by kind)."""
        return tuple(MappingProxyType(e) for e in self._events)

    def tick(self) -> None:
        """Bring the wall-clock counter up to date."""
        self.ledger.wall_s = time.monotonic() - self._started

    def exhausted(self, limits: tuple[str, ...] = LIMITS) -> str | None:
        """The first of `limits` reached (remembered in `stopped_by`), or None."""
        self.tick()
        limit = self.ledger.exhausted(self.budget, limits)
        if limit is not None:
            self.stopped_by = limit
        return limit

    def check(self, limits: tuple[str, ...] = LIMITS) -> None:
        """Raise BudgetExhausted when one of `limits` is reached (and remember which)."""
        limit = self.exhausted(limits)
        if limit is not None:
            raise BudgetExhausted(limit)

    def _fit(self, sampling: Sampling, new_samples: bool = True) -> Sampling | None:
        """Shrink one call so that it cannot overshoot the budget by much; None: wait first.

        Calls in flight hold a reservation (their n and n * max_tokens), so concurrent calls of
        one search share what is left instead of each seeing all of it: the generated tokens end
        at most one token per sample above the limit. A call that would be cut down while
        others hold reservations waits for them instead (None): they mostly stop early (a step
        ends at its delimiter) and hand back what they did not use. Only a call with nothing
        else in flight is clamped, or refused when nothing is left.
        """
        in_flight = self._reserved_samples > 0 or self._reserved_tokens > 0
        n, max_tokens = sampling.n, sampling.max_tokens
        if self.budget.samples is not None and new_samples:
            left = self.budget.samples - self.ledger.samples - self._reserved_samples
            if left < n and in_flight:
                return None
            if left <= 0:
                self.stopped_by = "samples"
                raise BudgetExhausted("samples")
            n = min(n, left)
        if self.budget.generated_tokens is not None:
            left = (
                self.budget.generated_tokens - self.ledger.generated_tokens - self._reserved_tokens
            )
            fit = min(max_tokens, math.ceil(left / n))
            if fit < max_tokens and in_flight:
                return None
            if left <= 0:
                self.stopped_by = "generated_tokens"
                raise BudgetExhausted("generated_tokens")
            max_tokens = max(1, fit)
        seed = sampling.seed if sampling.seed is not None else self.rng.randrange(2**31)
        return replace(sampling, n=n, max_tokens=max_tokens, seed=seed)

    def render(self, chain: Chain | None = None) -> str:
        return self.generator.render(self.problem, chain)

    def render_question(self, question: str) -> str:
        """The prompt of another question in this problem's template (a child thread's own
        short context, a question wrapped in collaboration rules): pure text work."""
        return self.generator.render(replace(self.problem, question=question))

    # -- what a call continues -------------------------------------------------------------

    @property
    def thinking(self) -> ThinkingFormat | None:
        """The model's thinking tags (None: it does not think)."""
        return cast("ThinkingFormat | None", getattr(self.generator, "thinking", None))

    def _streaming(self) -> StreamingGenerator:
        if not isinstance(self.generator, StreamingGenerator):
            name = getattr(self.generator, "name", type(self.generator).__name__)
            raise TypeError(
                f"generator {name} cannot stream, tokenize or render chats; adaptive "
                "generation needs the vllm or openai backend"
            )
        return self.generator

    def tokenize(self, text: str) -> tuple[int, ...]:
        """Token ids of `text` as prompt material (pure text work: not metered)."""
        return tuple(self._streaming().tokenize(text))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._streaming().detokenize(ids)

    def prompt_ids(self, chain: Chain | None = None) -> tuple[int, ...]:
        """The rendered prompt of `chain` (of the bare problem when None) as token ids, plus
        the chain's own generated ids when it is a chunked chain (exact continuation)."""
        if chain is not None and chain.token_ids is not None:
            return self.tokenize(self.render(None)) + chain.token_ids
        return self.tokenize(self.render(chain))

    def _prompt(self, chain: Chain | None, prompt: Prompt | Messages | None) -> Prompt:
        if prompt is None:
            if chain is not None and chain.token_ids is not None:
                return TokenPrompt(self.prompt_ids(chain))
            return self.render(chain)
        if isinstance(prompt, str | TokenPrompt):
            return prompt
        return self._streaming().chat(prompt)

    # -- metered calls ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reservation(
        self, sampling: Sampling, new_samples: bool = True
    ) -> AsyncIterator[Sampling]:
        """Wait for room under the budget, hold it while the call runs, hand it back after.

        A call that starts no new sample (a continuation, a side question) is not held to the
        `samples` limit: it belongs to a sample that was counted when it began."""
        while True:
            if new_samples:
                self.check()
            else:
                self.check(tuple(lim for lim in LIMITS if lim != "samples"))
            fitted = self._fit(sampling, new_samples)
            if fitted is not None:
                break
            self._released.clear()
            await self._released.wait()
        reserved_tokens = fitted.n * fitted.max_tokens
        reserved_samples = fitted.n if new_samples else 0
        self._reserved_samples += reserved_samples
        self._reserved_tokens += reserved_tokens
        try:
            yield fitted
        finally:
            self._reserved_samples -= reserved_samples
            self._reserved_tokens -= reserved_tokens
            # waiters re-fit at their next turn, after this call's spend is in the ledger
            self._released.set()

    def _meter(
        self,
        *,
        samples: int,
        tokens: int,
        prompt_tokens: int,
        cached_prompt_tokens: int,
        replayed: bool,
    ) -> None:
        led = self.ledger
        led.generator_calls += 1
        led.samples += samples
        # Replayed calls count toward the budget like fresh ones, so a replay makes exactly the
        # decisions of the recorded run; `replayed_tokens` says how much of that was not computed.
        led.generated_tokens += tokens
        led.prompt_tokens += prompt_tokens
        led.cached_prompt_tokens += cached_prompt_tokens
        if replayed:
            led.cache_hits += 1
            led.replayed_tokens += tokens
        self.tick()

    async def generate(
        self,
        sampling: Sampling,
        chain: Chain | None = None,
        *,
        prompt: Prompt | Messages | None = None,
        new_samples: bool | None = None,
    ) -> list[Completion]:
        """Sample continuations of `chain` (or of the bare prompt) and meter them.

        `prompt` replaces the rendered one: text, exact token ids (a continuation), or chat
        messages (a side question). Such calls are metered like any other but, unless
        `new_samples` says so, do not count toward `samples` (they continue or probe a sample
        that was counted when it began). A controller wrapped by a trimmer (`sampler`) has its
        own samples (no `prompt`) streamed and watched by it.
        """
        progress = self.progress
        if progress is not None:
            progress.saw(chain)
        if self.sampler is not None and prompt is None:
            sampled = await self.sampler.sample(self, self._prompt(chain, None), sampling)
            if progress is not None:
                progress.samples(sampled)
            return sampled
        resolved = self._prompt(chain, prompt)
        counted = _counts_as_sample(prompt, new_samples)
        if (
            progress is not None
            and sampling.n == 1
            and progress.streams_samples
            and isinstance(self.generator, StreamingGenerator)
        ):
            return await self._generate_streamed(sampling, resolved, counted)
        for empty in itertools.count(1):
            async with self._reservation(sampling, counted) as fitted:
                if progress is None:
                    completions = await self.generator.complete(resolved, fitted)
                else:
                    completions = await self._complete_watched(progress, resolved, fitted)
            if completions or fitted.n < 1:
                break
            # nothing came back: one call and (when it starts one) one sample spent, so the
            # budget binds; asked again a few times, then the problem fails, located
            self._meter(
                samples=1 if counted else 0,
                tokens=0,
                prompt_tokens=0,
                cached_prompt_tokens=0,
                replayed=False,
            )
            self.record(EventKind.EMPTY_RESPONSE, asked=fitted.n, in_a_row=empty)
            if empty >= MAX_EMPTY_RESPONSES:
                raise EmptyResponseError(
                    f"problem {self.problem.id}: generator {self._generator_name()} returned "
                    f"no sample for {empty} calls in a row (n={fitted.n}, max_tokens="
                    f"{fitted.max_tokens}); is the server answering with empty `choices`?"
                )
        if len(completions) > fitted.n:  # more samples than asked: the first n are kept
            self.record(
                EventKind.CLIPPED,
                reason="extra_samples",
                delivered=len(completions),
                asked=fitted.n,
            )
            completions = completions[: fitted.n]
        completions = [self._delivered(c, sampling, fitted) for c in completions]
        first = completions[0] if completions else None
        self._meter(
            samples=len(completions) if counted else 0,
            tokens=sum(c.tokens for c in completions),
            prompt_tokens=first.prompt_tokens if first else 0,
            cached_prompt_tokens=first.cached_prompt_tokens if first else 0,
            replayed=bool(completions) and all(c.cached for c in completions),
        )
        if progress is not None:
            progress.status()
            if counted:
                progress.samples(c for c in completions if c.finish_reason != FinishReason.ABORT)
        broken = sum(c.finish_reason == FinishReason.ABORT for c in completions)
        if broken:
            raise BrokenSampleError(
                f"problem {self.problem.id}: generator {self._generator_name()} ended "
                f"{broken} of {len(completions)} sample(s) with finish 'abort' that nobody "
                "asked to stop (a dropped stream or an aborted request): not a finished sample"
            )
        return completions

    async def _complete_watched(
        self, progress: Publisher, prompt: Prompt, sampling: Sampling
    ) -> list[Completion]:
        """A call of several samples while a client watches: a backend that can tell each
        sample's text as it is decoded (`complete_watched`, the same request and seed as
        `complete`) has the call's first sample lead the feed, so a search's leading chain
        streams; others send their samples when the call returns. Looked up on the class: a
        wrapper (the record/replay cache) that does not define it keeps its own `complete`."""
        progress.call_started(sampling.n)
        watched = getattr(type(self.generator), "complete_watched", None)
        number, leads = progress.open_stream() if watched is not None else (-1, False)
        try:
            if not leads:
                return await self.generator.complete(prompt, sampling)

            def watch(index: int, text: str) -> None:
                if index == 0:
                    progress.token(number, text)

            return await self.generator.complete_watched(prompt, sampling, watch)  # type: ignore[attr-defined]
        finally:
            progress.chains_alive -= sampling.n
            if watched is not None:
                progress.close_stream(number)

    async def _generate_streamed(
        self, sampling: Sampling, prompt: Prompt, counted: bool
    ) -> list[Completion]:
        """One sample asked for while a client watches: streamed (`stream`, metered there), so
        its tokens reach the feed as they come, and returned as `generate` would return it.
        Only with a feed: a recorded run's calls keep their non-streamed cache keys."""
        deltas: list[Delta] = []
        async with contextlib.aclosing(
            self.stream(sampling, prompt=prompt, new_samples=counted)
        ) as stream:
            async for delta in stream:
                deltas.append(delta)
        sample = joined_deltas(deltas)
        if sample.finish_reason == FinishReason.ABORT:
            raise BrokenSampleError(
                f"problem {self.problem.id}: generator {self._generator_name()} ended a "
                f"streamed sample without finishing it after {sample.tokens} tokens (a dropped "
                "stream or an aborted request): not a finished sample"
            )
        if counted and self.progress is not None:
            self.progress.samples([sample])
        return [sample]

    def _generator_name(self) -> str:
        return str(getattr(self.generator, "name", type(self.generator).__name__))

    async def try_generate(
        self,
        sampling: Sampling,
        chain: Chain | None = None,
        *,
        prompt: Prompt | Messages | None = None,
        new_samples: bool | None = None,
    ) -> list[Completion]:
        """`generate`, but a refused call (the budget has nothing left) comes back as one
        `Completion.refusal()` per sample asked for instead of raising `BudgetExhausted`;
        `stopped_by` names the limit either way. What helpers controllers use return."""
        try:
            return await self.generate(sampling, chain, prompt=prompt, new_samples=new_samples)
        except BudgetExhausted:
            return [Completion.refusal() for _ in range(max(1, sampling.n))]

    def _count(self, text: str) -> int:
        """Tokens of delivered `text` that came without ids or a count: our tokenizer's, or
        0 for a generator that cannot tokenize (fakes; both backends can)."""
        if not text or not isinstance(self.generator, StreamingGenerator):
            return 0
        try:
            return len(self.generator.tokenize(text))
        except NotImplementedError:
            return 0

    def _delivered(self, c: Completion, asked: Sampling, fitted: Sampling) -> Completion:
        """`c` as metered: never fewer tokens than it delivered (its ids, its logprobs, or its
        text re-encoded when it has neither), whatever it claims; never more than the call's
        `max_tokens` (a longer one is clipped to it, text and tokens, and a `clipped` event
        says so); a sample that hit a cap the Context lowered for the budget ends for the
        budget."""
        tokens = max(c.tokens, len(c.token_ids or ()), len(c.logprobs or ()))
        if c.token_ids is None and c.logprobs is None:  # its text is all it shows
            tokens = max(tokens, self._count(c.text))
        if tokens > fitted.max_tokens:
            c = self._clip(c, tokens, fitted.max_tokens)
            tokens = fitted.max_tokens
        if c.finish_reason == FinishReason.LENGTH and fitted.max_tokens < asked.max_tokens:
            c = replace(c, finish_reason=FinishReason.BUDGET)
        return c if tokens == c.tokens else replace(c, tokens=tokens)

    def _clip(self, c: Completion, delivered: int, cap: int) -> Completion:
        """`c` cut to its first `cap` tokens (a server that ignored `max_tokens`): its ids,
        logprobs and text, finish LENGTH; recorded as a `clipped` event."""
        self.record(
            EventKind.CLIPPED, reason="over_max_tokens", delivered=delivered, max_tokens=cap
        )
        ids = c.token_ids
        ids_text = self._cut_text(c.text, ids, cap, delivered)

        def cut(seq: tuple[Any, ...] | None) -> Any:
            return None if seq is None else seq[:cap]

        return replace(
            c,
            text=ids_text,
            tokens=cap,
            finish_reason=FinishReason.LENGTH,
            stop=None,
            token_ids=cut(ids),
            logprobs=cut(c.logprobs),
            top_logprobs=cut(c.top_logprobs),
            top_token_ids=cut(c.top_token_ids),
            token_id_logprobs=cut(c.token_id_logprobs),
        )

    def _cut_text(self, text: str, ids: Sequence[int] | None, cap: int, delivered: int) -> str:
        """The text of the first `cap` tokens: its ids decoded, else its text re-encoded and
        cut, else (a generator that cannot tokenize) its text cut in proportion."""
        if ids is not None:
            decoded = self._decode(ids[:cap])
            if decoded is not None:
                return decoded
        encoded = self._encode(text)
        if encoded is not None:
            decoded = self._decode(encoded[:cap])
            if decoded is not None:
                return decoded
        return text[: len(text) * cap // max(1, delivered)]

    def _encode(self, text: str) -> tuple[int, ...] | None:
        if not isinstance(self.generator, StreamingGenerator):
            return None
        try:
            return tuple(self.generator.tokenize(text))
        except Exception:  # a generator that cannot tokenize this text
            return None

    def _decode(self, ids: Sequence[int]) -> str | None:
        if not isinstance(self.generator, StreamingGenerator):
            return None
        try:
            return self.generator.detokenize(ids)
        except Exception:  # ids the generator's own tokenizer does not know
            return None

    async def stream(
        self,
        sampling: Sampling,
        chain: Chain | None = None,
        *,
        prompt: Prompt | Messages | None = None,
        new_samples: bool | None = None,
    ) -> AsyncGenerator[Delta, None]:
        """One sample, delta by delta (`sampling.n` must be 1), metered like `generate`.

        Consume it inside `contextlib.aclosing(...)` and leave the `async for` to abort: the
        backend stops the request at once, and the tokens delivered up to then are what the
        ledger counts.
        """
        if sampling.n != 1:
            raise ValueError(f"a streamed call is one sample; got n={sampling.n}")
        resolved = self._prompt(chain, prompt)
        generator = self._streaming()
        tokens = prompt_tokens = cached = 0
        replayed = True
        counted = _counts_as_sample(prompt, new_samples)
        progress = self.progress
        if progress is not None:
            progress.saw(chain)
        async with self._reservation(sampling, counted) as fitted:
            deltas = generator.stream(resolved, fitted)
            number, leads = -1, False
            if progress is not None:
                number, leads = progress.open_stream()
                progress.call_started(1)
            try:
                clamped = fitted.max_tokens < sampling.max_tokens
                async for delta in deltas:
                    n = delta.tokens  # read once: this loop runs per streamed token
                    if n == 0 and delta.text:  # a server that sent no ids, no count
                        delta = replace(delta, counted=self._count(delta.text))
                        n = delta.tokens
                    over = tokens + n - fitted.max_tokens
                    if over > 0:  # past max_tokens: clipped to it, and the stream ends here
                        delta = self._clip_delta(delta, tokens, fitted.max_tokens)
                        n = delta.tokens
                    if clamped and delta.finish_reason == FinishReason.LENGTH:
                        delta = replace(delta, finish_reason=FinishReason.BUDGET)
                    tokens += n
                    prompt_tokens += delta.prompt_tokens
                    cached += delta.cached_prompt_tokens
                    replayed = replayed and delta.cached
                    if delta.finish_reason == FinishReason.ABORT:  # metered, never yielded
                        raise BrokenSampleError(
                            f"problem {self.problem.id}: generator {self._generator_name()} "
                            f"ended a streamed sample with finish 'abort' after {tokens} "
                            "tokens that nobody asked to stop (a dropped stream or an aborted "
                            "request): not a finished sample"
                        )
                    if leads and progress is not None:
                        progress.token(number, delta.text)
                    yield delta
                    if over > 0:
                        break
            finally:
                await deltas.aclose()  # aborts the request when the caller stopped early
                self._meter(
                    samples=1 if counted else 0,
                    tokens=tokens,
                    prompt_tokens=prompt_tokens,
                    cached_prompt_tokens=cached,
                    replayed=replayed and tokens > 0,
                )
                if progress is not None:
                    progress.close_stream(number)
                    progress.call_ended(1)

    def _clip_delta(self, delta: Delta, before: int, cap: int) -> Delta:
        """The part of a delta that fits `cap` after `before` tokens (the call's max_tokens),
        as the stream's last (finish LENGTH), recorded as a `clipped` event."""
        room = max(0, cap - before)
        self.record(
            EventKind.CLIPPED,
            reason="over_max_tokens",
            delivered=before + delta.tokens,
            max_tokens=cap,
            streamed=True,
        )
        over = delta.tokens - room
        ids = delta.token_ids[:room]
        text = self._cut_text(delta.text, delta.token_ids or None, room, room + over)

        def cut(seq: tuple[Any, ...] | None) -> Any:
            return None if seq is None else seq[:room]

        return replace(
            delta,
            text=text,
            token_ids=ids,
            logprobs=cut(delta.logprobs),
            top_logprobs=cut(delta.top_logprobs),
            top_token_ids=cut(delta.top_token_ids),
            token_id_logprobs=cut(delta.token_id_logprobs),
            finish_reason=FinishReason.LENGTH,
            stop=None,
            counted=None if delta.token_ids else room,
        )

    async def score(self, chains: list[Chain]) -> list[list[float]]:
        """Per-step verifier scores of `chains`, metered as one verifier call per chain.

        A spent generator budget does not stop scoring: the search may still rank what it has.
        """
        if self.verifier is None:
            raise ValueError(
                "this search needs a verifier: set verifier=<name> (see conf/verifier)"
            )
        self.check(SCORING_LIMITS)
        scores = await self.verifier.score(self.problem, chains)
        self._check_scores(chains, scores)
        self.ledger.verifier_calls += len(chains)
        self.ledger.verifier_tokens += getattr(scores, "tokens", 0)
        if getattr(scores, "cached", False):
            self.ledger.cache_hits += 1
        self.tick()
        if self.progress is not None:
            self.progress.status()
        return [list(s) for s in scores]

    def _check_scores(self, chains: list[Chain], scores: list[list[float]]) -> None:
        """A verifier owes one score per step of every chain: a short list would be read as
        an unscored chain and quietly change the vote, so it is an error here."""
        name = getattr(self.verifier, "name", type(self.verifier).__name__)
        if len(scores) != len(chains):
            raise ValueError(
                f"verifier {name} returned {len(scores)} results for {len(chains)} chains"
            )
        for chain, s in zip(chains, scores, strict=True):
            if len(s) != len(chain.steps):
                raise ValueError(
                    f"verifier {name} returned {len(s)} scores for a chain of "
                    f"{len(chain.steps)} steps (problem {self.problem.id}); a verifier scores "
                    "every step (search.step_reduction=model asks for the whole prefix as one)"
                )

    def settle(self, outcome: Outcome | None = None) -> Outcome | None:
        """What every finished (or failed) search owes its record: the events of its samples
        and the critical-path tokens of its tree, put in one place for the runner and the API."""
        tree = outcome.tree if outcome is not None else self.tree
        ledger = outcome.ledger if outcome is not None else self.ledger
        ledger.critical_path_tokens = tree.critical_path_tokens()
        if outcome is not None:
            outcome.details.setdefault("events", [dict(e) for e in self._events])
        return outcome


def _counts_as_sample(prompt: object, new_samples: bool | None) -> bool:
    """A call with the rendered prompt starts a sample; one with an explicit prompt continues
    or probes one, unless the caller says otherwise."""
    return (prompt is None) if new_samples is None else new_samples


def joined_deltas(deltas: Sequence[Delta]) -> Completion:
    """A streamed sample's deltas as the one Completion a non-streamed call returns: texts,
    ids and per-token data joined (None where some delta lacks them), the last one's finish
    (ABORT when none finished it), the first one's prompt counts."""
    last = deltas[-1] if deltas else None
    first = deltas[0] if deltas else None

    def joined(name: str) -> Any:
        parts = [getattr(d, name) for d in deltas]
        if any(p is None for p in parts):
            return None
        return tuple(x for p in parts for x in p)

    token_ids = tuple(t for d in deltas for t in d.token_ids)
    has_ids = all(d.token_ids or not d.tokens for d in deltas)
    return Completion(
        text="".join(d.text for d in deltas),
        tokens=sum(d.tokens for d in deltas),
        finish_reason=(last.finish_reason if last else None) or FinishReason.ABORT,
        stop=last.stop if last else None,
        prompt_tokens=first.prompt_tokens if first else 0,
        cached_prompt_tokens=first.cached_prompt_tokens if first else 0,
        logprobs=joined("logprobs"),
        top_logprobs=joined("top_logprobs"),
        top_token_ids=joined("top_token_ids"),
        token_id_logprobs=joined("token_id_logprobs"),
        cached=bool(deltas) and all(d.cached for d in deltas),
        token_ids=token_ids if has_ids else None,
    )
