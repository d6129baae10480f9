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
finisher) are the reference's. The rules prompt has the reference's parts, in its order and
place (the first part of the user message, before the problem): the rules of the shared
workspace, worked examples of two workers, suggestions on collaborating with more examples, and
the call to solve together; the words and examples are ours (`rules_style=short`: a one-paragraph
version; `rules_file`: any text, e.g. the reference's own prompt). Where we differ from it:
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

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

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


def short_rules(workers: Sequence[str]) -> str:
    """`rules_style=short`: one paragraph of rules (our default before the paper-style prompt)."""
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


def _example(question: str | None, workspace: str, render: Callable[[str], str] | None) -> str:
    """One worked example: the question as the model would see it (in its chat template when
    `render` is given, as the reference wraps its shots), then the shared workspace."""
    if question is None:
        asked = "(the earlier steps are left out)" + SEP
    else:
        asked = render(question) if render is not None else question + SEP
    return f"<example>{SEP}{asked}{workspace.strip()}{SEP}</example>"


def _examples(workers: Sequence[str], render: Callable[[str], str] | None) -> dict[str, str]:
    """Our few-shot exchanges of two workers, in the layout every worker's view has."""
    a, b = workers[0], workers[1]
    p = step_prefix
    split = _example(
        "Answer both parts. (a) A box holds 3 red and 4 blue marbles: how many marbles are in "
        "it? (b) Solve 2x = 10. Give the two answers separated by a comma.",
        f"""{OTHERS_HEADER.lstrip()}{p(a, 1)}I'll take part (a): 3 red and 4 blue marbles \
make{PIVOT}

{OWN_HEADER}{p(b, 1)}Part (a) counts the marbles, so Wait, {a} has already started on (a). \
I'll do (b) instead: dividing both sides of 2x = 10 by 2 gives x =""",
        render,
    )
    plan = _example(
        "Find the sum of the squares of the integers from 1 to 6.",
        f"""{p(a, 1)}Let's split this. I'll square 1, 2 and 3; {b}, please square 4, 5 and 6. \
Then one of us adds the two partial sums.

{p(b, 1)}Sounds good: I'll take 4, 5 and 6.

{p(a, 2)}1 + 4 + 9 = 14, so my part is 14.

{p(b, 2)}16 + 25 + 36 = 77, so my part is 77.

{p(a, 3)}Adding the two parts: 14 + 77 = 91.

{p(b, 3)}{a} is adding the parts, so I'll check the total another way: n(n + 1)(2n + 1)/6 \
with n = 6 gives 6 * 7 * 13 / 6 = 91. That agrees with {a}'s sum.

{p(a, 4)}Both ways give 91, so the sum is \\boxed{{91}}.""",
        render,
    )
    talk = _example(
        "A rectangle has perimeter 20 and area 21. What are its side lengths?",
        f"""{p(b, 1)}Hi! Suggestion: {a}, set up the equations from the perimeter and the area, \
and I'll look for whole-number sides that fit, as a quick check.

{p(a, 1)}Hi, I'm {a}. Here's how we can do it: call the sides x and y. Then 2(x + y) = 20, so \
x + y = 10, and xy = 21.

{p(b, 2)}Trying whole numbers with x + y = 10: 1 and 9 give 9, 2 and 8 give 16, 3 and 7 give \
21. So 3 and 7 fit.

{OTHERS_HEADER.lstrip()}{p(a, 2)}{b}, careful: whole numbers may not be the only answer. From \
x + y = 10 and xy = 21, x and y are the roots of t^2 - 10t + 21 = 0, which are{PIVOT}

{OWN_HEADER}{p(b, 3)}Good point, {a}. Since the sides are the two roots of that quadratic, \
there is only one pair, so 3 and 7 are the sides.""",
        render,
    )
    switch = _example(
        None,
        f"""{OTHERS_HEADER.lstrip()}{p(a, 4)}Expanding the left side: (x + 3)^2 = x^2 + 6x + 9, so \
the equation becomes x^2 + 6x + 9 = 2x + 21, that is{PIVOT}

{OWN_HEADER}{p(b, 4)}Let me expand the left side: (x + 3)^2 = x^2 + Wait, am I doing the same \
as {a}? Yes, and {a} is further along. I'll do something else: once the roots are known they \
must be checked in the original equation, so let me find which values of x it rules out.""",
        render,
    )
    return {"split": split, "plan": plan, "talk": talk, "switch": switch}


def paper_rules(workers: Sequence[str], render: Callable[[str], str] | None = None) -> str:
    """`rules_style=paper` (the default): a prompt with the reference's parts in its order (the
    rules of the shared workspace, worked examples, suggestions on collaborating with examples
    of talking and of switching away from duplicate work, and the call to solve together), in
    our own words. `render` puts each example's question in the model's chat template, as the
    reference does with its shots (None: the plain question)."""
    names = names_text(workers)
    a, b = workers[0], workers[1]
    shots = _examples(workers, render)
    others = OTHERS_HEADER.strip()
    own = OWN_HEADER.strip()
    return f"""# Working together

You are one of {len(workers)} assistants, {names}, who will solve one problem together, \
each writing at the same time as the others. Work as a team and do not do the same work twice: \
you can take different parts of the problem, check each other's results, try different methods, \
or share the work in any other way that helps.

Everyone's reasoning is split into steps, and every step starts with its author's name and \
number, like {step_prefix("Name", "n").strip()}. The finished steps of all of you come first, \
in the order they were finished. After '{others}' you see the steps the others are writing \
at this moment; each is unfinished and ends with {PIVOT}, and it keeps growing while you \
write. After '{own}' comes the step you are writing yourself, and you continue only that one.

Read the others' steps, finished and unfinished, before you decide what to do next, and look \
again every few steps. When someone asks you something or suggests what you should do, answer \
them. If you find that you are doing what someone else has done or is doing right now, stop at \
once, even in the middle of a sentence (for example, '... Wait, {b} is already doing this, so I \
will ...'), and take a different part of the work.

When the problem is solved, one of you writes the **final** answer as \\boxed{{answer}}. Once it \
is written, it cannot be changed.

# Examples

## 1. Sharing the work within the first step

{shots["split"]}

## 2. A whole solution

{shots["plan"]}

# How to work together

Keep an eye on what the others are doing and change your plan when theirs changes. Some ways to \
work together:

- **Plan:** agree on who does what (if {a} writes "{b}, please do this", {b} does it). When you \
disagree about the plan, follow {a}'s.
- **Divide:** split the problem into parts and give each part to one of you. Prefer the parts \
nobody has worked on over re-checking small calculations that are already done.
- **Compare methods:** each of you tries a different method (for example, working through the \
cases against finding a formula) and you keep the one that gets there first.
- **Talk:** ask each other questions ("{a}, which case should I take?") and point out mistakes \
("{b}, your step 3 has a sign error").
- **Announce:** say what you will do next ("I'll check {a}'s result from step 2"). When someone \
else announces a task, pick another one.
- **Notice overlap:** when you see that someone is doing the same thing as you, stop and choose \
something else; if you are ahead of them, ask them to switch instead.
- **Change course:** when what you are doing stops being useful, drop it in the middle of the \
sentence and move on to what is needed now.

Any other way of working together is fine too. Every few steps, ask yourself whether you are \
adding something new or repeating someone else's work; if you are repeating it, switch.

**Talking:**

{shots["talk"]}

**Noticing duplicate work and switching:**

{shots["switch"]}

# The problem

{names}, you will now solve the next problem together. Keep track of who is doing what, and \
talk to each other so that nobody does the same work twice."""


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
    rules_style: Literal["paper", "short"] = "paper"
    """paper: rules, worked examples and collaboration suggestions with the reference's parts
    in our words | short: one paragraph of rules"""
    rules: str | None = None
    """the collaboration rules shown before the problem, as written; null: rules_style's (or
    rules_file's)"""
    rules_file: str | None = None
    """a file whose text is the rules (e.g. the reference's prompt); null: none"""

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
        if self.rules is not None and self.rules_file is not None:
            raise self.invalid("rules_file", self.rules_file, "cannot be set together with rules")
        if self.rules_file is not None:
            self._read_rules()

    def _read_rules(self) -> str:
        """The text of `rules_file` (refused when it cannot be read)."""
        path = Path(str(self.rules_file)).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise self.invalid("rules_file", str(path), f"cannot be read ({reason})") from None
        if not text.strip():
            raise self.invalid("rules_file", str(path), "is empty")
        return text.strip()

    def rules_text(self, render: Callable[[str], str] | None = None) -> str:
        """The rules shown before the problem (`render`: the examples' chat template)."""
        if self.rules is not None:
            return self.rules
        if self.rules_file is not None:
            return self._read_rules()
        if self.rules_style == "short":
            return short_rules(self.workers)
        return paper_rules(self.workers, render)

    async def rollout(self, ctx: Context, sampling: Sampling, label: str) -> RolloutResult:
        # the rules and the problem are one user message, as the reference passes them
        rules = self.rules_text(ctx.render_question)
        state = _State(
            ctx.render_question(rules + SEP + ctx.problem.question),
            [_Worker(n, first_step(i, n)) for i, n in enumerate(self.workers)],
        )
        # the shared context holds every worker's text and the finisher's: the workers share
        # what is left of it once the finisher's tokens are kept aside
        run = Rollout.start(ctx, state.head, sampling.max_tokens, label=label, policy=self.name)
        share = (sampling.max_tokens - self.answer_tokens) // len(self.workers)
        cap = self.max_thread_tokens or max(1, share)
        count = _SharedTokens(ctx, rules + SEP)
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
            shared = count(state)
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
            rounds.append(_round_stats(number, [t.completion for _, t in done], shared))
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


class _SharedTokens:
    """Tokens of the shared context (head plus history) where the backend tokenizes (vllm,
    openai; None elsewhere), each part encoded once: the history is append-only and grows every
    round, and re-encoding all of it each round made a rollout quadratic in its length. Parts
    are counted on their own, so the total can be a token off at each boundary."""

    def __init__(self, ctx: Context, shared_head: str = "") -> None:
        self.ctx = ctx if isinstance(ctx.generator, StreamingGenerator) else None
        self.shared_head = shared_head  # the start of the head every problem of a run shares
        self.parts = 0
        self.total = 0

    def __call__(self, state: _State) -> int | None:
        if self.ctx is None:
            return None
        parts = [state.head, *state.history]
        for k in range(self.parts, len(parts)):
            self.total += self._count(parts[k], head=k == 0)
        self.parts = len(parts)
        return self.total

    def _count(self, text: str, *, head: bool) -> int:
        assert self.ctx is not None
        if head:  # the rules (thousands of tokens) are encoded once per run, not per problem
            at = text.find(self.shared_head) if self.shared_head else -1
            if at >= 0:
                cut = at + len(self.shared_head)
                start = _tokens_of(self.ctx.generator, text[:cut])
                return start + (len(self.ctx.tokenize(text[cut:])) if text[cut:] else 0)
        return len(self.ctx.tokenize(text)) if text else 0


def _tokens_of(generator: Any, text: str) -> int:
    """Token count of a text many problems share (a run's rules), per generator."""
    try:
        return _shared_tokens(generator, text)
    except TypeError:  # a generator that cannot be a cache key
        return len(generator.tokenize(text))


@functools.lru_cache(maxsize=8)
def _shared_tokens(generator: Any, text: str) -> int:
    return len(generator.tokenize(text))


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
