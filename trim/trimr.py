"""TrimR (arXiv 2505.17155): cut thinking that has settled, wanders, or loops.

At each thought boundary the finished thought's answer is read (by the answer judge, or by
asking the policy model itself) and compared with the previous answer-bearing thought's,
beside the decode. By default (`checker=explicit`) a thought bears an answer only when it states
one outright (a box, "the answer is", "final answer"): the judge's last-number fallback would
make nearly every thought answer-bearing. Three rules, checked in this order:

- overthinking: the last `agree` answer-bearing thoughts give equivalent answers: conclude
  gently (`conclude_cue`), cutting back to the end of the last agreeing thought;
- repetition: an `ngram`-token span occurs `repeats` times in the last `window` tokens;
- underthinking: `max_thoughts` thoughts were judged without agreement, or (opt-in, a thinking
  cap) thinking reached `underthink_share` of the sample's `max_tokens`: force a conclusion
  (`force_cue`).

The paper's verifier is a separate instruction-tuned ~7B model. The paper's prompts, thresholds
and cues were not retrievable here (the paper links no code): `agree`, `underthink_share`,
`max_thoughts`, the repetition test, the cues and the checker question are reconstructions
(docs/thought-trimming.md).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from reasoning.context import Context
from reasoning.settings import Allowed, Count, Probability, Text, settings
from reasoning.types import Sampling
from trim.repetition import NgramRepeats
from trim.side_requests import Pending
from trim.thoughts import REFLECTION_CUES, Cues, Thoughts
from trim.transcript import Transcript
from trim.trimmer import Cut, Trimmer, Watch

CHECKERS = ("explicit", "grader", "model")
STATED_ANSWER = re.compile(r"\\(?:boxed|fbox)\s*\{|\bthe\s+answer\s+is\b|\bfinal\s+answer\b", re.I)
"""What makes a thought answer-bearing under `checker=explicit`: an answer stated outright."""
CHECKER_QUESTION = (
    "What final answer does this reasoning reach? Reply with the answer only, or NONE."
)
CHECKER_TOKENS = 32


@settings
class TrimR(Trimmer):
    """TrimR's three redundancy rules over thoughts split at reflection cues."""

    name: ClassVar[str] = "trimr"

    # overthinking: when the answer has settled
    conclude_cue: Text = "\n\nI have verified the answer enough; it is settled.\n"
    force_cue: Text = "\n\nI have explored enough; I will commit to the best-supported answer.\n"
    """underthinking and repetition: written before the close tag to force a conclusion"""
    checker: Literal["explicit", "grader", "model"] = "explicit"
    """who reads a thought's answer: explicit (the answer judge, only from a thought that states
    an answer: a box, "the answer is", "final answer") | grader (the answer judge with all its
    fallbacks, the last number included) | model (the policy model is asked)"""
    agree: Count = 2
    """m: consecutive answer-bearing thoughts whose answers must agree"""
    underthink_share: Annotated[Probability | None, Allowed("in (0, 1] or null")] = None
    """underthinking: a thinking cap at this share of the sample's max_tokens (null: off)"""
    max_thoughts: Count = 20
    """underthinking: thoughts judged without m agreeing answers"""
    window: Annotated[int, Field(ge=2), Allowed("an integer >= 2")] = 512
    """repetition: last generated tokens examined"""
    ngram: Count = 16
    """repetition: span length in tokens"""
    repeats: Annotated[int, Field(ge=2), Allowed("an integer >= 2")] = 4
    """repetition: occurrences of one span that make a loop"""
    cues: Cues = REFLECTION_CUES

    def check(self) -> None:
        if self.ngram > self.window:
            raise self.invalid("ngram", self.ngram, f"must be <= trim.window ({self.window})")
        self.cues = tuple(self.cues)

    def watch(self, ctx: Context, prompt_ids: tuple[int, ...], sampling: Sampling) -> Watch:
        if ctx.judge is None:
            raise ValueError("trim=trimr compares answers: it needs an answer judge")
        return TrimRWatch(self, ctx, sampling)


@dataclass(frozen=True)
class Verdict:
    """What the thoughts up to one boundary say: the latest answer and how many agree on it."""

    answer: str | None
    streak: int


class TrimRWatch(Watch):
    def __init__(self, policy: TrimR, ctx: Context, sampling: Sampling) -> None:
        self.policy, self.ctx, self.sampling = policy, ctx, sampling
        self.thoughts = Thoughts(policy.cues)
        self.pending: Pending[int, Verdict] = Pending()
        self.previous: asyncio.Task[Verdict] | None = None
        self.loops = self._loops()
        self.fed = (0, 0)  # (transcript epoch, generated ids) the loop detector has seen

    def _loops(self) -> NgramRepeats:
        p = self.policy
        return NgramRepeats(window=p.window, ngram=p.ngram, repeats=p.repeats)

    def _looping(self, transcript: Transcript) -> bool:
        """The repetition test on the last `window` generated ids, fed only the new ones."""
        epoch, seen = self.fed
        if transcript.epoch != epoch or transcript.generated < seen:  # cut back: start over
            self.loops, seen = self._loops(), 0
        new = transcript.generated - seen
        if new > 0:
            self.loops.extend(transcript.recent_ids(min(new, self.policy.window)))
        self.fed = (transcript.epoch, transcript.generated)
        return self.loops.hit

    def step(self, transcript: Transcript, tokens: int) -> Cut | None:
        p = self.policy
        for _ in self.thoughts.update(transcript.text):
            k = self.thoughts.count - 1
            if k >= p.max_thoughts:
                # the verdict of thought max_thoughts - 1 always cuts, so no later one is ever
                # read: the side requests of a sample stay within max_thoughts
                continue
            start, end = self.thoughts.span(k)
            thought = transcript.text[start:end]
            self.previous = self.pending.spawn(k, self._judge(thought, self.previous))
        for k, verdict in self.pending.ready():
            at = self.thoughts.boundaries[k]
            if verdict.streak >= p.agree:
                return Cut("overthinking", p.conclude_cue, at, k + 1, verdict.answer)
            if k + 1 >= p.max_thoughts:
                return Cut("underthinking", p.force_cue, at, k + 1, verdict.answer)
        if self._looping(transcript):
            return Cut("repetition", p.force_cue, None, self.thoughts.count)
        share = p.underthink_share
        if share is not None and tokens >= share * self.sampling.max_tokens:
            return Cut("underthinking", p.force_cue, None, self.thoughts.count)
        return None

    async def _judge(self, thought: str, previous: asyncio.Task[Verdict] | None) -> Verdict:
        """This thought's answer, and the agreement streak it extends (in thought order)."""
        answer = await self._answer(thought)
        before = await previous if previous is not None else Verdict(None, 0)
        if answer is None:
            return before  # a thought without an answer neither breaks nor extends the streak
        if before.answer is None:
            return Verdict(answer, 1)
        assert self.ctx.judge is not None
        same = await self.ctx.judge.equivalent(answer, before.answer)
        return Verdict(answer, before.streak + 1 if same else 1)

    async def _answer(self, thought: str) -> str | None:
        judge = self.ctx.judge
        assert judge is not None
        if self.policy.checker == "grader":
            return judge.extract(thought)
        if self.policy.checker == "explicit":
            return judge.extract(thought) if STATED_ANSWER.search(thought) else None
        question = [{"role": "user", "content": f"{thought}\n\n{CHECKER_QUESTION}"}]
        sampling = Sampling(temperature=0.0, max_tokens=CHECKER_TOKENS, n=1)
        (reply,) = await self.ctx.try_generate(sampling, prompt=question)
        if reply.refused:  # the budget has nothing left for the question: no answer read
            return None
        said = reply.text.strip()
        if not said or said.upper().startswith("NONE"):
            return None
        return judge.extract(said) or said.splitlines()[0].strip()

    async def close(self) -> None:
        await self.pending.close()
