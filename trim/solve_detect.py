"""Solve-Detect-Verify's detect step (arXiv 2505.11966): stop thinking once the model itself
says, with confidence, that it already has the final answer.

At each thought boundary (a paragraph opening with a hesitation cue) a side request continues
the exact prefix with a yes/no question and reads one token's logprobs:
P(Yes) = exp(lp_yes) / (exp(lp_yes) + exp(lp_no)). P(Yes) above `threshold` cuts the thinking
back to that boundary: the default 0.5 with the strict `>` is the paper's rule, P(Yes) > P(No)
(as its OpenReview discussion states it); 0.8 is the toolkit's earlier, more cautious setting.
The decode does not pause for the probe. The verify and refine steps (FlexiVe) are not part of
this policy. The paper's code is released but was not retrievable here: the probe text and the
cues are the toolkit's reconstructions.
"""

from __future__ import annotations

import math
from typing import ClassVar

from reasoning.context import Context
from reasoning.settings import NonEmptyText, Probability, Text, settings
from reasoning.types import EventKind, Sampling, TokenPrompt
from trim.side_requests import Pending
from trim.thoughts import Cues, Thoughts
from trim.transcript import Transcript
from trim.trimmer import Cut, Trimmer, Watch

HESITATION_CUES: tuple[str, ...] = ("Wait", "Hmm", "Alternatively", "But let me")


@settings
class SolveDetect(Trimmer):
    """The detect step: a yes/no probe at each hesitation, answered by the policy model."""

    name: ClassVar[str] = "sdv"

    conclude_cue: Text = "\n"
    probe: NonEmptyText = "\n\nHave I already obtained the final answer? Answer Yes or No:"
    """appended to the exact prefix in the side request; the next token answers it"""
    yes: NonEmptyText = "Yes"
    """the probe's yes word; its first token (after a space) is read"""
    no: NonEmptyText = "No"
    """the probe's no word; its first token (after a space) is read"""
    threshold: Probability = 0.5
    """P(Yes) above it cuts (strict; 0.5 is the paper's P(Yes) > P(No))"""
    cues: Cues = HESITATION_CUES  # probed at each

    def check(self) -> None:
        if self.yes == self.no:
            raise self.invalid("no", self.no, "must differ from trim.yes")
        self.cues = tuple(self.cues)

    def label_ids(self, ctx: Context) -> tuple[int, int]:
        """The first token of " Yes" and of " No": what the model writes after the colon."""
        yes, no = ctx.tokenize(" " + self.yes)[0], ctx.tokenize(" " + self.no)[0]
        if yes == no:
            raise self.invalid("no", self.no, "must start with a different token from trim.yes")
        return yes, no

    def watch(self, ctx: Context, prompt_ids: tuple[int, ...], sampling: Sampling) -> Watch:
        return DetectWatch(self, ctx, prompt_ids)


def p_yes(lp_yes: float, lp_no: float) -> float | None:
    """exp(lp_yes) / (exp(lp_yes) + exp(lp_no)), computed without underflow; None when both
    are -inf (or not numbers)."""
    gap = lp_no - lp_yes
    if math.isnan(gap):
        return None
    return 0.0 if gap > 700 else 1.0 / (1.0 + math.exp(gap))


class DetectWatch(Watch):
    def __init__(self, policy: SolveDetect, ctx: Context, prompt_ids: tuple[int, ...]) -> None:
        self.policy, self.ctx, self.prompt_ids = policy, ctx, prompt_ids
        self.labels = policy.label_ids(ctx)
        self.probe_ids = ctx.tokenize(policy.probe)
        self.thoughts = Thoughts(policy.cues)
        self.pending: Pending[int, float | None] = Pending()
        self.failure: ValueError | None = None  # a probe's reply without the label logprobs

    def step(self, transcript: Transcript, tokens: int) -> Cut | None:
        for at in self.thoughts.update(transcript.text):
            ids = self.prompt_ids + transcript.prefix_ids(at, self.ctx.tokenize) + self.probe_ids
            self.pending.spawn(self.thoughts.count - 1, self._p_yes(ids))
        if self.failure is not None:  # a probe already showed the backend cannot answer it
            failure, self.failure = self.failure, None  # raised once (close comes after)
            raise failure
        for k, p_yes in self.pending.ready():
            if p_yes is None:
                continue
            if p_yes > self.policy.threshold:
                at = self.thoughts.boundaries[k]
                details = {"p_yes": p_yes}
                return Cut("answer_reached", self.policy.conclude_cue, at, k + 1, None, details)
        return None

    async def _p_yes(self, ids: tuple[int, ...]) -> float | None:
        """P(Yes) over {Yes, No} for the next token after the probe; None when unreadable."""
        sampling = Sampling(temperature=0.0, max_tokens=1, n=1, logprob_token_ids=self.labels)
        (reply,) = await self.ctx.try_generate(sampling, prompt=TokenPrompt(ids))
        if reply.refused:  # the budget has nothing left for the probe: no verdict
            return None
        first = reply.token_id_logprobs[0] if reply.token_id_logprobs else {}
        yes, no = self.labels
        if yes not in first or no not in first:
            # the backend ignores `logprob_token_ids`: the detector could never fire, on this
            # sample or any other, so the sample fails here rather than run untrimmed
            self.failure = ValueError(
                f"trim={self.policy.name} reads the probe's logprobs of token ids {yes} "
                f"(trim.yes={self.policy.yes!r}) and {no} (trim.no={self.policy.no!r}), and the "
                "backend returned none: it needs a backend that returns the logprobs of chosen "
                "token ids (backend=vllm, or a vLLM server that takes `logprob_token_ids`); "
                "without one the detector never fires. Remove +trim=sdv or use +trim=trimr"
            )
            self._failed(f"no logprobs for token ids {yes} (yes) and {no} (no)")
            raise self.failure
        p = p_yes(first[yes], first[no])
        if p is None:
            self._failed(f"logprobs {first[yes]} (yes) and {first[no]} (no) give no probability")
        return p

    def _failed(self, why: str) -> None:
        """Recorded once per problem (the trace says why the sample failed, or why a probe gave
        no verdict)."""
        name = self.policy.name
        if not any(e.get("event") == EventKind.PROBE_FAILED for e in self.ctx.events):
            self.ctx.record(EventKind.PROBE_FAILED, policy=name, reason=why)

    async def close(self) -> None:
        await self.pending.close()
        if self.failure is not None:  # a reply that came back after the last step still counts
            failure, self.failure = self.failure, None  # close may be called twice
            raise failure
