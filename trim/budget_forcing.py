"""Budget forcing (s1, arXiv 2501.19393): think at most, and at least, a number of tokens.

The rules follow s1's evaluation code (simplescaling/s1, the lm-evaluation-harness fork's
`lm_eval/models/vllm_causallms.py`, and `eval/commands.sh` for the paper's runs):

- ceiling: at `max_think_tokens` thinking tokens the thinking is cut and its end forced: "\\n"
  (left out when the thinking already ends with a newline), the close tag, then the answer cue
  (s1's "\\nFinal Answer:" by default) and a free answer phase. null is s1's `auto`: the
  sample's `max_tokens` less 100 tokens left for the answer. A ceiling that leaves no room for
  the answer (at or above the sample's `max_tokens`) is refused when the sample starts;
- extension (s1's `thinking_n_ignore`, the paper's "Wait" rows): the first `ignore_end` ends of
  thinking are ignored whatever their length, while thinking is under the ceiling: the close
  tag and what follows it are dropped, `extend_cue` ("Wait", s1's `thinking_n_ignore_str`) is
  appended and the model thinks on from that exact prefix;
- floor (the toolkit's): thinking that ends before `min_think_tokens` is extended the same way,
  at most `max_extensions` times.

The cues are s1's; the floor rule and the bound of the answer phase by the sample's own cap are
the toolkit's (docs/thought-trimming.md, "Budget forcing").
"""

from __future__ import annotations

from typing import ClassVar

from reasoning.context import Context
from reasoning.settings import NonNegativeCount, OptionalTokenCap, Text, settings
from reasoning.types import Sampling
from trim.transcript import Transcript
from trim.trimmer import Cut, Trimmer, Watch

AUTO_ANSWER_ROOM = 100
"""Tokens s1's `max_tokens_thinking=auto` leaves for the answer."""


@settings
class BudgetForcing(Trimmer):
    """s1's budget forcing as a trimmer: a ceiling, s1's N ignored ends, and a floor."""

    name: ClassVar[str] = "budget"

    conclude_cue: Text = "\n"
    max_think_tokens: OptionalTokenCap = None
    """thinking tokens that force the end of thinking; null: the sample's max_tokens less 100
    (s1's auto); must be below the sample's max_tokens"""
    ignore_end: NonNegativeCount = 0
    """ends of thinking replaced by extend_cue whatever their length, while under the ceiling
    (s1's thinking_n_ignore)"""
    min_think_tokens: NonNegativeCount = 0
    """thinking that ends earlier is extended (0: never)"""
    extend_cue: Text = "Wait"
    """written instead of the close tag to think on (s1's thinking_n_ignore_str; "": the close
    tag is only dropped)"""
    max_extensions: NonNegativeCount = 2
    """extensions per sample"""

    def check(self) -> None:
        if self.max_think_tokens is not None and self.min_think_tokens > self.max_think_tokens:
            raise self.invalid(
                "min_think_tokens",
                self.min_think_tokens,
                f"must be <= trim.max_think_tokens ({self.max_think_tokens})",
            )

    def ceiling(self, max_tokens: int) -> int:
        """The thinking tokens that force the end for a sample capped at `max_tokens`; refused
        when it would leave the forced answer no room."""
        if self.max_think_tokens is None:
            if max_tokens <= AUTO_ANSWER_ROOM:
                raise self.invalid(
                    "max_think_tokens",
                    None,
                    f"null (s1's auto) leaves {AUTO_ANSWER_ROOM} tokens for the answer and "
                    f"needs a sample max_tokens above that (this sample has {max_tokens}): "
                    f"set an integer below {max_tokens}",
                )
            return max_tokens - AUTO_ANSWER_ROOM
        if self.max_think_tokens >= max_tokens:
            raise self.invalid(
                "max_think_tokens",
                self.max_think_tokens,
                f"must be below the sample's max_tokens ({max_tokens}): the forced answer is "
                "written with what thinking leaves of it",
            )
        return self.max_think_tokens

    def watch(self, ctx: Context, prompt_ids: tuple[int, ...], sampling: Sampling) -> Watch:
        return BudgetWatch(self, self.ceiling(sampling.max_tokens))


class BudgetWatch(Watch):
    def __init__(self, policy: BudgetForcing, ceiling: int) -> None:
        self.policy, self.ceiling = policy, ceiling
        self.ignored = 0  # ends ignored unconditionally (s1's thinking_n_ignore)
        self.extensions = 0  # ends extended by the floor rule

    def step(self, transcript: Transcript, tokens: int) -> Cut | None:
        if tokens >= self.ceiling:
            cue = self.policy.conclude_cue
            if cue and transcript.text.endswith(cue):
                cue = ""  # s1 writes the newline only when the thinking lacks one
            return Cut("budget", cue)
        return None

    def extend(self, transcript: Transcript, tokens: int) -> str | None:
        p = self.policy
        if tokens >= self.ceiling:
            return None
        if self.ignored < p.ignore_end:
            self.ignored += 1
            return p.extend_cue
        if tokens >= p.min_think_tokens or self.extensions >= p.max_extensions:
            return None
        self.extensions += 1
        return p.extend_cue
