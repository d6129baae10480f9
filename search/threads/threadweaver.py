"""ThreadWeaver's fork-join blocks (Lian et al., arXiv 2512.07843), as its evaluator runs them.

The model writes `<Parallel><Outlines><Outline>1: ...</Outline>...</Outlines>`; decoding stops at
`</Outlines>`, every outline id becomes one concurrent request that continues the same context
with `\\n<Thread>\\n{id}:` and stops at `</Thread>`, and the threads are appended in outline order
before sequential decoding resumes (docs/threads.md has the exact join text and where we differ).
A thread that ends without `</Thread>`, cut by its cap or ended by EOS, ends the rollout after
the join, as the evaluator's `end_seq` does (`eos_ends_rollout=false`: an EOS thread is closed
and decoding goes on, our rule before).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from reasoning.context import Context
from reasoning.types import EventKind, FinishReason, Sampling
from search.settings import (
    MaxThreadTokens,
    Prefix,
    StrategySettings,
    settings,
)
from search.threads.runtime import Branch, Rollout, RolloutResult, Thread, continuation

OUTLINES_OPEN = "<Outlines>"
OUTLINES_CLOSE = "</Outlines>"
THREAD_OPEN = "<Thread>"
THREAD_CLOSE = "</Thread>"
OUTLINE_ID = re.compile(r"<Outline>\s*([0-9]+(?:\.[0-9]+)*)\s*:")

# Control text for a model not trained on the format: a block of two generic outlines, so real
# requests fork and join (a ThreadWeaver-trained model writes its own: set prefix to "").
DEFAULT_PREFIX = (
    "<Parallel>\n<Outlines>\n"
    "<Outline>1: Solve the problem step by step.</Outline>\n"
    "<Outline>2: Solve it again another way to check the result.</Outline>\n"
    "</Outlines>"
)


def outline_ids(segment: str) -> list[str]:
    """The outline ids of the last `<Outlines>` block of `segment`, in order, duplicates kept
    (the evaluator reads only the text written since the last join)."""
    at = segment.rfind(OUTLINES_OPEN)
    scope = segment if at < 0 else segment[at:]
    return OUTLINE_ID.findall(scope)


def thread_opening(outline_id: str) -> str:
    """What a thread's request adds to the shared context before the model writes."""
    return f"\n{THREAD_OPEN}\n{outline_id}:"


def closed(text: str) -> str:
    """A thread's text closed with `</Thread>` (the evaluator closes one cut by EOS or length)."""
    return text if text.endswith(THREAD_CLOSE) else text + THREAD_CLOSE


def joined_text(ids: list[str], texts: dict[str, str]) -> str:
    """The threads as the evaluator appends them: a newline, `<Thread>\\n{id}:{text}</Thread>`
    per outline id in outline order with nothing between, then a newline (no `</Parallel>`:
    the model writes it)."""
    if not ids:
        return ""
    return "\n" + "".join(f"{THREAD_OPEN}\n{i}:{closed(texts[i])}" for i in ids) + "\n"


@settings
class ThreadWeaver(StrategySettings):
    """`search/strategy=threadweaver`."""

    name: ClassVar[str] = "threadweaver"

    prefix: Prefix = None  # null: two generic outlines
    max_thread_tokens: MaxThreadTokens = None
    eos_ends_rollout: bool = True
    """a thread ended by EOS (no `</Thread>`) ends the rollout after the join, as the
    evaluator does; false: it is closed and sequential decoding goes on (our rule before)"""

    async def rollout(self, ctx: Context, sampling: Sampling, label: str) -> RolloutResult:
        run = Rollout.start(
            ctx, ctx.render(None), sampling.max_tokens, label=label, policy=self.name
        )
        segment = DEFAULT_PREFIX if self.prefix is None else self.prefix  # since the last join
        run.force(segment)
        blocks: list[dict[str, Any]] = []
        fallbacks = 0
        while run.ended is None:
            if not segment.endswith(OUTLINES_CLOSE):
                step = await run.decode(
                    continuation(sampling, sampling.max_tokens, (OUTLINES_CLOSE,))
                )
                segment += step.text
                if step.stop != OUTLINES_CLOSE:  # EOS, the cap or the budget: the trajectory ends
                    run.end(step.finish)
                    break
            ids = outline_ids(segment)
            if not ids:
                # a block with no readable outline: keep decoding sequentially, and say so
                fallbacks += 1
                ctx.record(EventKind.FALLBACK, policy=self.name, reason="no outline ids")
                segment = ""
                continue
            threads = await self._threads(ctx, run, ids, sampling)
            texts = {t.label: t.text for t in threads}
            run.join(threads, joined_text(ids, texts), outline_ids=ids)
            blocks.append(
                {
                    "ids": ids,
                    "thread_tokens": [t.result.tokens for t in threads],
                    "finish": [t.result.finish for t in threads],
                }
            )
            segment = ""
            ended = self._ending(threads)
            if ended is not None:
                run.end(*ended)
        return RolloutResult(
            run.chain,
            {"label": label, "blocks": blocks, "fallbacks": fallbacks, "notes": run.notes},
        )

    def _ending(self, threads: list[Thread]) -> tuple[FinishReason, str] | None:
        """Why the block's threads end the rollout after their join, or None: the evaluator
        stops when a thread lacks `</Thread>` (cut by its cap, or by EOS)."""
        if any(t.result.truncated for t in threads):
            return FinishReason.LENGTH, "a thread reached its token cap"
        if self.eos_ends_rollout and any(t.result.hit_eos for t in threads):
            return FinishReason.EOS, "a thread ended at EOS without </Thread>"
        return None

    async def _threads(
        self, ctx: Context, run: Rollout, ids: list[str], sampling: Sampling
    ) -> list[Thread]:
        """One request per distinct id (a repeated id reuses its thread's text, as the
        evaluator's dictionary of threads does)."""
        # each thread's request continues the rollout's context, so, as the evaluator caps every
        # request by its own context, each may take what is left of it; the rollout ends when
        # its joined context is full
        cap = run.left if self.max_thread_tokens is None else min(self.max_thread_tokens, run.left)
        unique = list(dict.fromkeys(ids))
        if len(unique) < len(ids):
            ctx.record(EventKind.DUPLICATE_OUTLINE_IDS, policy=self.name)
        branches = [Branch(i, run.prompt + thread_opening(i), thread_opening(i)) for i in unique]
        return await run.fork(branches, continuation(sampling, cap, (THREAD_CLOSE,)), split=False)
