"""Budget forcing (s1, arXiv 2501.19393): think at most, and at least, a number of tokens.

At `max_think_tokens` thinking tokens the thinking is cut and its end forced (close tag, then
the answer cue). When thinking ends before `min_think_tokens` (the close tag appears, or the
sample ends at EOS with the block open), the close tag and what follows it are dropped, the
`extend_cue` ("Wait") is appended and the model thinks on from that exact prefix, at most
`max_extensions` times. s1 counts thinking tokens the same way; the cues are s1's.
"""

from __future__ import annotations

from typing import ClassVar

from reasoning.context import Context
from reasoning.settings import NonEmptyText, NonNegativeCount, Text, TokenCap, settings
from reasoning.types import Sampling
from trim.transcript import Transcript
from trim.trimmer import Cut, Trimmer, Watch


@settings
class BudgetForcing(Trimmer):
    """s1's budget forcing as a trimmer: a ceiling and a floor on thinking tokens."""

    name: ClassVar[str] = "budget"

    conclude_cue: Text = "\n"
    max_think_tokens: TokenCap = 512
    """thinking tokens that force the end of thinking"""
    min_think_tokens: NonNegativeCount = 0
    """thinking that ends earlier is extended (0: never)"""
    extend_cue: NonEmptyText = "Wait"
    """written instead of the close tag to think on"""
    max_extensions: NonNegativeCount = 2
    """extensions per sample"""

    def check(self) -> None:
        if self.min_think_tokens > self.max_think_tokens:
            raise self.invalid(
                "min_think_tokens",
                self.min_think_tokens,
                f"must be <= trim.max_think_tokens ({self.max_think_tokens})",
            )

    def watch(self, ctx: Context, prompt_ids: tuple[int, ...], sampling: Sampling) -> Watch:
        return BudgetWatch(self)


class BudgetWatch(Watch):
    def __init__(self, policy: BudgetForcing) -> None:
        self.policy = policy
        self.extensions = 0

    def step(self, transcript: Transcript, tokens: int) -> Cut | None:
        if tokens >= self.policy.max_think_tokens:
            return Cut("budget", self.policy.conclude_cue)
        return None

    def extend(self, transcript: Transcript, tokens: int) -> str | None:
        p = self.policy
        if tokens >= p.min_think_tokens or self.extensions >= p.max_extensions:
            return None
        self.extensions += 1
        return p.extend_cue
