"""Hogwild! Inference (Rodionov et al., arXiv 2504.06261) on a stock engine, by rounds.

In the reference, K workers decode one token each per step over a shared KV cache, so every
worker sees the others' unfinished steps as they are written. A stock engine cannot share a
cache that way, so here the workers decode in rounds: each round every active worker continues
its own *view* (the rules and problem, the finished steps of everyone in the order they were
finished, the others' steps in progress, its own step in progress) by at most `delta` tokens,
all concurrently; the views are rebuilt and re-sent (the engine's prefix cache serves the
shared head and history) before the next round. With `delta=1` this is the reference's
schedule; larger rounds trade staleness (others see a worker's progress one round later) for
far fewer requests.

Within a round the replies are applied in worker order (not arrival order), so steps that end
in the same round are committed in worker order, as the reference commits Alice before Bob. A
view lists the others' steps in worker order (with two workers: the reference's layout). Each
call is a tree node whose parents are all of the previous round's calls (every view holds
everyone's progress), and a JOINED node merges the last round, so the critical path is the sum
of each round's longest call (plus the finisher). `details["rounds"]` records what each round
re-sent and how much the prefix cache served; `details["totals"]` sums them up.

The protocol strings (headers, step prefix, first-step seeds, the "Quick check" question, the
finisher) are the reference's; the rules text is ours. Where we differ from it:
- Forbidden tokens: the reference suppresses `#`, BOS, EOS and `</think>` while sampling. Our
  Sampling cannot ban tokens, so a worker may write them: EOS ends that worker (its step is
  committed), the others go on.
- A step ends when a round's call stops at "\\n\\n" and the step so far ends on a sentence end;
  the reference tests the same thing after every token.
- The shared "Quick check" counter counts decoded tokens only (the reference also counts the
  step headers it feeds); a worker's tokens of a round are counted before its step-end test.
- A closed, non-empty `\\boxed{...}` in a committed step finishes the run (the reference also
  needs it to parse as a number). The round that wrote it is processed to its end (its other
  calls were already decoded).
- Workers that have stopped (EOS) and have no step in progress are left out of the others'
  section instead of showing an empty `<...>` entry.
- The run also stops when the budget refuses a call (after applying that round's replies), and
  when a round decodes nothing at all.
- The workers share one context, capped by `max_tokens`: `max_thread_tokens` defaults to
  `(max_tokens - answer_tokens) // K`, and a round never lets the workers together decode past
  `max_tokens - answer_tokens`, so a rollout with its finisher stays within `max_tokens` (the
  reference's finisher comes on top of its budget).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from reasoning.answers import nonempty_box_closed
from reasoning.context import Context
from reasoning.settings import Allowed, OptionalNonNegativeCount
from reasoning.types import Completion, EventKind, FinishReason, Sampling, StreamingGenerator
from search.settings import (
    AnswerCue,
    AnswerTokens,
    MaxThreadTokens,
    RoundTokens,
    StrategySettings,
    settings,
)
from search.threads.runtime import Branch, Rollout, RolloutResult, Thread, continuation

SEP = "\n\n"
OTHERS_HEADER = "\n\n### Work in progress (others)\n\n"  # after the history
OWN_HEADER = "### Work in progress (own)\n\n"
PIVOT = "<...>"  # ends every unfinished step shown to someone else
QUICK_CHECK = "Quick check: am I doing redundant work? (yes/no): "
FINISHER = (
    "\n\nWait, given the limited time, I have to give an answer right now. Considering all my "
    "previous attempts, I have to conclude that the final answer is \\boxed{"
)
END_OF_STEP = (".", "?", "!", "。", "۔", "؟", "।", "॥", "…", "‽", "།", "᠃", "։", "჻", "¶", "❧")


def step_prefix(worker: str, index: int) -> str:
    return f"**{worker} [{index}]:** "


def first_step(position: int, worker: str) -> str:
    """The seeded first step: the first worker proposes a plan, the others greet."""
    if position == 0:
        return step_prefix(worker, 1) + f"Hi, I'm {worker}. Here's how we can"
    return step_prefix(worker, 1) + f"Hi, I'm {worker}."


def names_text(workers: Sequence[str]) -> str:
    return workers[0] if len(workers) == 1 else ", ".join(workers[:-1]) + " and " + workers[-1]


def default_rules(workers: Sequence[str]) -> str:
    names = names_text(workers)
    return (
        "# Collaborative reasoning\n\n"
        f"You are {len(workers)} workers, {names}, solving one problem together at the same "
        "time. Every step starts with its author and number, like "
        f"`{step_prefix(workers[0], 1).strip()}`. Finished steps of everyone are listed first, "
        "in the order they were finished; after '### Work in progress (others)' you see the "
        "steps the others are writing right now, cut off with <...>, and after "
        "'### Work in progress (own)' the step you are writing. Split the work and do not do "
        "what someone else is already doing: if you notice you are, say so and take another "
        "part of the problem. Any one of you writes the final answer once, as "
        "\\boxed{answer}.\n\n"
        f"{names}, solve the following problem together."
    )


def ends_step(text: str) -> bool:
    """The reference's end-of-step test on the step written so far (stop string excluded)."""
    return text.strip().endswith(END_OF_STEP)


def others_section(wips: Sequence[str]) -> str:
    """The steps in progress as someone else sees them, each cut off with `<...>`."""
    return "".join(w + PIVOT + SEP for w in wips if w)


def view(head: str, history: str, wips: Sequence[str], me: int) -> str:
    """What worker `me` continues: the others in worker order, then its own step (with two
    workers this is the reference's cache layout, byte for byte)."""
    others = [w for i, w in enumerate(wips) if i != me]
    return head + history + OTHERS_HEADER + others_section(others) + OWN_HEADER + wips[me]


def merged_response(history: str, wips: Sequence[str]) -> str:
    """The reference's final response after the prompt: the history, then every step still in
    progress, in worker order."""
    return history + OTHERS_HEADER + others_section(wips)


@dataclass
class _Worker:
    name: str
    wip: str  # the step in progress, from its header on ("" once the worker ended at EOS)
    step: int = 1
    used: int = 0  # tokens decoded
    commits: int = 0
    ended: bool = False  # EOS (or an aborted call)


@dataclass
class _State:
    head: str
    workers: list[_Worker]
    history: list[str] = field(default_factory=list)
    since_check: int = 0  # decoded tokens since the last "Quick check" (shared by all)
    checks: int = 0
    answered: bool = False

    @property
    def history_text(self) -> str:
        return "".join(self.history)

    @property
    def wips(self) -> list[str]:
        return [w.wip for w in self.workers]


@settings
class Hogwild(StrategySettings):
    """`search/strategy=hogwild`."""

    name: ClassVar[str] = "hogwild"

    workers: Annotated[Sequence[str], Allowed("a list of at least 2 distinct non-empty names")] = (
        "Alice",
        "Bob",
    )
    """the workers' names, in the order their replies are applied within a round"""
    round_tokens: RoundTokens = 32
    # each worker's; null: (max_tokens - answer_tokens) // workers (they share one context)
    max_thread_tokens: MaxThreadTokens = None
    collab_every: OptionalNonNegativeCount = 256
    """decoded tokens (all workers together) between "Quick check" questions; 0 or null: never"""
    answer_tokens: AnswerTokens = 16
    answer_cue: AnswerCue = FINISHER
    rules: str | None = None
    """the collaboration rules shown before the problem; null: ours for these workers"""

    def __post_init__(self) -> None:
        w = self.workers
        if isinstance(w, str):
            raise self.invalid("workers", w, "must be a list of names")
        names = list(w)
        if len(names) < 2 or not all(isinstance(n, str) and n.strip() for n in names):
            raise self.invalid("workers", w, "must list at least 2 non-empty names")
        if len(set(names)) != len(names):
            raise self.invalid("workers", w, "must not repeat a name")
        self.workers = names

    async def rollout(self, ctx: Context, sampling: Sampling, label: str) -> RolloutResult:
        rules = default_rules(self.workers) if self.rules is None else self.rules
        state = _State(
            ctx.render_question(rules + SEP + ctx.problem.question),
            [_Worker(n, first_step(i, n)) for i, n in enumerate(self.workers)],
        )
        # the shared context holds every worker's text and the finisher's: the workers share
        # what is left of it once the finisher's tokens are kept aside
        run = Rollout.start(ctx, state.head, sampling.max_tokens, label=label, policy=self.name)
        share = (sampling.max_tokens - self.answer_tokens) // len(self.workers)
        cap = self.max_thread_tokens or max(1, share)
        count = _token_counter(ctx)
        rounds: list[dict[str, Any]] = []
        latest: dict[str, Thread] = {}  # each worker's last call: the join merges every worker
        stopped: str | None = None
        while stopped is None:
            active = [w for w in state.workers if not w.ended and w.used < cap]
            if not active:
                stopped = "eos" if all(w.ended for w in state.workers) else "tokens"
                break
            caps = _shares(
                [min(self.round_tokens, cap - w.used) for w in active],
                run.left - self.answer_tokens,
            )
            if not any(caps):
                stopped = "tokens"  # the shared context is full
                break
            active = [w for w, c in zip(active, caps, strict=True) if c > 0]
            number = len(rounds) + 1
            shared = state.head + state.history_text
            branches = [
                Branch(
                    w.name,
                    view(state.head, state.history_text, state.wips, _index(state, w)),
                    sampling=continuation(sampling, c, (SEP,)),
                    data={"worker": w.name, "round": number},
                )
                for w, c in zip(active, [c for c in caps if c > 0], strict=True)
            ]
            threads = await run.round(branches)
            done = [(w, t) for w, t in zip(active, threads, strict=True) if t.node is not None]
            for w, t in done:
                latest[w.name] = t
                self._advance(ctx, state, w, t.completion, number)
            if not done:
                stopped = "budget"
                break
            rounds.append(_round_stats(number, [t.completion for _, t in done], count(shared)))
            if state.answered:
                stopped = "answer"
            elif len(done) < len(active):
                stopped = "budget"  # a refused call: what is left cannot run a whole round
            elif sum(t.tokens for _, t in done) == 0:
                stopped = "stalled"  # nothing decoded: another round would be the same
        ends = [latest[w.name] for w in state.workers if w.name in latest]
        return await self._finish(ctx, run, state, sampling, ends, rounds, stopped)

    def _advance(self, ctx: Context, state: _State, w: _Worker, c: Completion, number: int) -> None:
        """Apply one worker's call: extend its step, or commit it to the history."""
        w.used += c.tokens
        state.since_check += c.tokens
        body = w.wip + c.text
        if c.hit_eos:  # the worker has said its last
            self._commit(ctx, state, w, body if body.endswith(SEP) else body + SEP, number)
            w.ended, w.wip = True, ""
        elif c.finish_reason == FinishReason.STOP and c.stop == SEP:
            if ends_step(body):
                self._commit(ctx, state, w, body + SEP, number)
                self._next_step(ctx, state, w, number)
            else:
                w.wip = body + SEP  # a paragraph break inside one step
        else:  # the round's cap (or an aborted request: that worker goes no further)
            w.wip = body
            w.ended = c.finish_reason == FinishReason.ABORT

    def _commit(self, ctx: Context, state: _State, w: _Worker, step: str, number: int) -> None:
        state.history.append(step)
        w.commits += 1
        if nonempty_box_closed(step):
            state.answered = True
            ctx.record(EventKind.ANSWER, policy=self.name, worker=w.name, round=number)

    def _next_step(self, ctx: Context, state: _State, w: _Worker, number: int) -> None:
        w.step += 1
        w.wip = step_prefix(w.name, w.step)
        if self.collab_every and state.since_check > self.collab_every:
            w.wip += QUICK_CHECK
            state.since_check = 0
            state.checks += 1
            ctx.record(
                EventKind.COLLAB_CHECK, policy=self.name, worker=w.name, step=w.step, round=number
            )

    async def _finish(
        self,
        ctx: Context,
        run: Rollout,
        state: _State,
        sampling: Sampling,
        ends: list[Thread],
        rounds: list[dict[str, Any]],
        stopped: str | None,
    ) -> RolloutResult:
        """Join every worker into the merged response (one JOINED node under each worker's last
        call, which a worker that ended early made in an earlier round);
        force an answer with the finisher when it holds none."""
        merged = merged_response(state.history_text, state.wips)
        reason = _REASONS.get(stopped or "", FinishReason.LENGTH)
        run.join(ends, merged, workers=len(state.workers))
        finisher: dict[str, Any] | None = None
        if self.answer_tokens > 0 and not nonempty_box_closed(merged):
            greedy = Sampling(
                temperature=0.0, top_p=1.0, max_tokens=self.answer_tokens, seed=sampling.seed
            )
            step = await run.decode(greedy, opening=self.answer_cue, finisher=True)
            finisher = {"tokens": step.tokens, "refused": step.refused}
            if not step.refused:
                ctx.record(EventKind.FINISHER, policy=self.name, tokens=step.tokens)
                run.end(step.finish)
        run.end(reason)  # no finisher: the merged response is the answer as it stands
        totals = _totals(rounds, self.round_tokens, state, finisher)
        details = {
            "label": run.label,
            "workers": list(self.workers),
            "stopped": stopped,
            "rounds": rounds,
            "totals": totals,
            "finisher": finisher,
        }
        return RolloutResult(run.chain, details)


_REASONS = {
    "answer": FinishReason.BOXED,
    "budget": FinishReason.BUDGET,
    "eos": FinishReason.EOS,
    "tokens": FinishReason.LENGTH,
    "stalled": FinishReason.EMPTY,
}


def _index(state: _State, w: _Worker) -> int:
    return state.workers.index(w)


def _shares(wants: list[int], room: int) -> list[int]:
    """Each worker's cap this round: what it wants, in worker order, while the shared context
    has room (the default caps never run out of it; an explicit `max_thread_tokens` may)."""
    caps = []
    for want in wants:
        caps.append(max(0, min(want, room)))
        room -= caps[-1]
    return caps


def _token_counter(ctx: Context) -> Any:
    """Token count of a text where the backend tokenizes (vllm, openai); None elsewhere."""
    if not isinstance(ctx.generator, StreamingGenerator):
        return lambda text: None
    return lambda text: len(ctx.tokenize(text))


def _round_stats(number: int, calls: list[Completion], shared: int | None) -> dict[str, Any]:
    """One round's cost: what was re-sent and how much of it the prefix cache served. The
    shared part is the head and history every view starts with (counted on its own, so it can
    be a token off at its end)."""
    prompt = sum(c.prompt_tokens for c in calls)
    cached = sum(c.cached_prompt_tokens for c in calls)
    hit = None
    if shared:
        hit = sum(min(c.cached_prompt_tokens, shared) / shared for c in calls) / len(calls)
    return {
        "round": number,
        "calls": len(calls),
        "decoded_tokens": sum(c.tokens for c in calls),
        "longest_call_tokens": max(c.tokens for c in calls),
        "prompt_tokens": prompt,
        "cached_prompt_tokens": cached,
        "reprefill_tokens": prompt - cached,
        "shared_prefix_tokens": shared,
        "shared_cache_hit_rate": hit,
    }


def _totals(
    rounds: list[dict[str, Any]], delta: int, state: _State, finisher: dict[str, Any] | None
) -> dict[str, Any]:
    finisher_tokens = finisher["tokens"] if finisher else 0
    return {
        "rounds": len(rounds),
        "sequential_steps": len(rounds) * delta,  # the paper's step count, one token a step
        "decoded_tokens": sum(w.used for w in state.workers) + finisher_tokens,
        "prompt_tokens": sum(r["prompt_tokens"] for r in rounds),
        "cached_prompt_tokens": sum(r["cached_prompt_tokens"] for r in rounds),
        "reprefill_tokens": sum(r["reprefill_tokens"] for r in rounds),
        "collab_checks": state.checks,
        "commits": {w.name: w.commits for w in state.workers},
        "worker_tokens": {w.name: w.used for w in state.workers},
    }
