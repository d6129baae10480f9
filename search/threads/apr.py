"""APR, Adaptive Parallel Reasoning (Pan et al., arXiv 2504.15466), as its evaluator runs it.

The model decides when to spawn: it writes a calling block

    <Calling Sub Searches>
    <Start Sub Search 0 at level 1> Moving to Node #0,0
    <Start Sub Search 1 at level 1> Moving to Node #0,1
    <End Calling Sub Searches>

and every start line becomes a child rollout with its OWN short context (the sub-task, never
the parent's history), run concurrently. The calling block is then removed from the parent's
context and replaced by the children's results,

    <Sub Searches>
    <Goal Reached in Sub Search 0 at level 1 at Node #0,0>
    {the child's result}
    <No Solution in Sub Search 1 at level 1 at Node #0,1>
    <End Sub Searches>

after which the parent goes on decoding (and may spawn again). A parent that starts writing
results itself (`<Sub Searches>`) gets `<Calling Sub Searches>` in their place, as in the
reference. A child's task `Moving to Node #<id>` whose node the parent's trace describes (a
`Moving to Node #<id>` / `Current State: T:[a, b], Operations: [...]` pair, or a
`Generated Node #<id>: T:[a, b] Operation: x-y=z` line) gets the reference's Countdown prompt;
any other task is the child's question itself. The tree holds the parent's segments, the spawn
node (FORKED), each child's segments under it and one JOINED node whose parents are every
child's last node, so `critical_path_tokens` charges a spawn its longest child.

Where this differs from the reference (a from-scratch Countdown model served by SGLang):
- Stop strings. The trained model ends its sequence after `<End Calling Sub Searches>`; an
  untrained one does not, so decoding also stops there (vLLM leaves the stop string out of the
  text: it is put back as a zero-token node). A rollout at `max_depth` decodes with the
  reference child's only stop, `<Sub Searches>`: a calling block it writes is not expanded.
- Prompts. `prompt: raw` sends what the reference sends, to a Countdown problem only: the
  tokenizer's BOS token as text, then `Sub Call Budget: {k} ` when set, then the root state
  `Moving to Node #0\nCurrent State: T:[a, b, ...], Operations: []` built from the problem's
  metadata, with no chat template; a child's context is the BOS token and its node state, and
  a null `prefix` forces nothing (the trained model writes its own blocks). `prompt: chat`
  (the default, for models not trained on the format) renders every context in the problem's
  chat template (`ctx.render_question` for a child); its default `prefix` forces a generic
  calling block of two sub-tasks so that such a model still spawns, and the optional
  `Sub Call Budget: {k} ` is forced before the prefix, at the start of the root's answer.
- Sampling. The reference samples every call at temperature 1.0, top-p 1 (eval_apr.py); ours
  takes `search.temperature` and `search.top_p` for every call, root and children alike (the
  shared defaults are 0.6 / 0.95: set 1.0 / 1.0 to sample as APR does).
- Countdown nodes. Under `prompt: chat` the root's prompt is the natural-language question, so
  a Countdown problem (metadata `numbers`, `target`) seeds node `#0` from its metadata. A
  `Generated Node` whose parent is unknown is skipped (the reference fails the whole call with
  a KeyError); a task naming an unknown node keeps its text as the child's prompt.
- Results. `Goal Reached` counts only the model's own marks, never the `<Goal Reached in Sub
  Search ...>` lines of a nested join. A child with fewer than two marks (an untrained model)
  gives its last paragraph with a closed `\\boxed{...}`, else no solution.
- Join lines. `i` is the child's position among those spawned and `level` the child's real depth
  (the reference hard-codes level 1: it never nests). `Node` is `#<id>` for a task naming a
  Countdown node, otherwise the child's dotted index path (`0`, `1`, nested `0.1`).
- Malformed blocks (no opening line, a broken start line, no start line) are not expanded: the
  rollout goes on decoding sequentially and a `fallback` event says why (the reference fails
  the whole rollout on a block it cannot read).
- Fan-out. The reference runs what the trained model writes; an untrained model may write any
  number of start lines at every level, so spawning is bounded twice, by default: a block
  spawns at most `max_children` children (8), and one rollout spawns at most `max_spawns` child
  contexts in all, at every depth (32). Start lines past either cap are dropped (a
  `dropped_children` event says which cap); a block with none left is not expanded, and the
  rollout decodes on as at `max_depth`. One rollout thus makes at most about
  2 * (1 + max_spawns) + blocks calls, whatever `max_depth` is.
- Token caps. Each context is capped separately, as the reference caps each request: a
  parent's `Rollout.left` counts what the parent itself decoded (a removed calling block
  included), not its children, whose tokens live in their own contexts. A child may decode up
  to `max_thread_tokens`, by default what is left of its parent's cap at the spawn (the
  reference gives every request one fixed cap). The Context's budget bounds the sum.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from reasoning.context import Context
from reasoning.settings import Count, OptionalCount, OptionalNonNegativeCount
from reasoning.types import EventKind, Sampling
from search.settings import (
    MaxThreadTokens,
    Prefix,
    StrategySettings,
    settings,
)
from search.threads.apr_format import (
    CALL_CLOSE,
    CALL_OPEN,
    DEFAULT_PREFIX,
    RESULTS_OPEN,
    CallingBlock,
    ChildResult,
    MalformedBlock,
    Node,
    calling_block,
    child_prompt,
    countdown_nodes,
    joined_text,
    node_id,
    root_node,
    search_result,
)
from search.threads.runtime import Rollout, RolloutResult, continuation

# --- the policy --------------------------------------------------------------------------------


@dataclass
class _Log:
    """What one rollout's spawns did, for its details (children's spawns included)."""

    spawns: list[dict[str, Any]] = field(default_factory=list)
    fallbacks: int = 0
    spawned: int = 0  # child contexts spawned so far, at every depth (bounded by max_spawns)


@settings
class APR(StrategySettings):
    """`search/strategy=apr`."""

    name: ClassVar[str] = "apr"

    prefix: Prefix = None  # {question}: the problem; null: 2 generic sub-tasks (chat), none (raw)
    prompt: Literal["chat", "raw"] = "chat"
    """chat: each context is its task in the model's chat template; raw: APR's own text, the
    BOS token then the Countdown node state, no template (a trained APR model; Countdown only)"""
    sub_call_budget: OptionalNonNegativeCount = None
    """forces `Sub Call Budget: {k} ` first (APR's sub-call conditioning); null: none"""
    max_thread_tokens: MaxThreadTokens = None
    max_depth: Count = 1
    """rollouts up to this depth may spawn (1: only the root, as in APR)"""
    max_children: OptionalCount = 8
    """children per calling block (the rest are dropped); null: no cap but max_spawns"""
    max_spawns: Count = 32
    """child contexts one rollout may spawn in all, at every depth (the rest are dropped)"""

    async def rollout(self, ctx: Context, sampling: Sampling, label: str) -> RolloutResult:
        if self.prompt == "raw":
            budget = (
                "" if self.sub_call_budget is None else f"Sub Call Budget: {self.sub_call_budget} "
            )
            head = raw_head(ctx, budget + self._root(ctx).prompt())
            run = Rollout.start(ctx, head, sampling.max_tokens, label=label, policy=self.name)
            # a trained model writes its own blocks: a null prefix forces nothing here
            run.force((self.prefix or "").replace("{question}", ctx.problem.question))
        else:
            run = Rollout.start(
                ctx, ctx.render(None), sampling.max_tokens, label=label, policy=self.name
            )
            if self.sub_call_budget is not None:
                run.force(f"Sub Call Budget: {self.sub_call_budget} ")
            prefix = DEFAULT_PREFIX if self.prefix is None else self.prefix
            run.force(prefix.replace("{question}", ctx.problem.question))
        log = _Log()
        await self._trace(ctx, run, sampling, depth=0, path="", log=log)
        return RolloutResult(
            run.chain,
            {
                "label": label,
                "spawns": log.spawns,
                "fallbacks": log.fallbacks,
                "notes": run.notes,
            },
        )

    def _root(self, ctx: Context) -> Node:
        """Node #0 of the problem, for the raw prompt; refuses a problem that is not Countdown."""
        root = root_node(ctx) if ctx.problem.metadata.get("task") == "countdown" else None
        if root is None:
            raise ValueError(
                "search.strategy.prompt=raw builds APR's root prompt from a Countdown problem's "
                f"metadata (task: countdown, integer numbers and target); problem "
                f"{ctx.problem.id!r} has none: use search.strategy.prompt=chat"
            )
        return root

    def _head(self, ctx: Context, task: str) -> str:
        """A child's whole context: its task in the chat template, or raw as APR sends it."""
        return raw_head(ctx, task) if self.prompt == "raw" else ctx.render_question(task)

    async def _trace(
        self, ctx: Context, run: Rollout, sampling: Sampling, *, depth: int, path: str, log: _Log
    ) -> None:
        """Decode `run` to its end, expanding every calling block it closes while it may."""
        deep_enough = depth >= self.max_depth

        def may_spawn() -> bool:
            # the rollout's spawn allowance is shared by every depth: once spent, no block is
            # expanded any more and every context decodes as one at max_depth does
            return not deep_enough and log.spawned < self.max_spawns

        since = 0  # where the text written since the last join starts
        block_done = may_spawn() and run.text.rstrip().endswith(CALL_CLOSE)  # a forced block
        while run.ended is None:
            stops = (CALL_CLOSE, RESULTS_OPEN) if may_spawn() else (RESULTS_OPEN,)
            if not block_done:
                step = await run.decode(
                    continuation(sampling, sampling.max_tokens, stops), keep_stop=False
                )
                if step.stop == RESULTS_OPEN and step.tokens > 0:
                    run.force(CALL_OPEN)  # never let the model write results itself
                    continue
                if step.stop != CALL_CLOSE or step.tokens == 0:
                    # EOS, the cap, the budget (or a call that made no progress): the end
                    run.end(step.finish)
                    break
                run.append(CALL_CLOSE, stop_string=True)  # decoded, left out by the engine
            block_done = False
            try:
                block = calling_block(run.text[since:])
            except MalformedBlock as bad:
                log.fallbacks += 1
                ctx.record(EventKind.FALLBACK, policy=self.name, reason=str(bad), at=run.label)
                continue
            if not await self._spawn(
                ctx, run, sampling, since + block.start, block, depth, path, log
            ):
                ctx.record(EventKind.NOT_EXPANDED, policy=self.name, at=run.label)
            since = len(run.text)  # a child's result is never read as the parent's block
        if not may_spawn() and CALL_CLOSE in run.text[since:]:
            ctx.record(EventKind.NOT_EXPANDED, policy=self.name, at=run.label)

    async def _spawn(
        self,
        ctx: Context,
        run: Rollout,
        sampling: Sampling,
        start: int,
        block: CallingBlock,
        depth: int,
        path: str,
        log: _Log,
    ) -> bool:
        """Run the block's children concurrently, then join their results in its place; False
        (nothing spawned, the block stays as text) when the rollout's `max_spawns` is spent."""
        searches = block.searches
        allowed = self.max_spawns - log.spawned
        limit, by = (allowed, "max_spawns")
        if self.max_children is not None and self.max_children < allowed:
            limit, by = (self.max_children, "max_children")
        dropped = max(0, len(searches) - limit)
        if dropped:
            searches = searches[:limit]
            ctx.record(
                EventKind.DROPPED_CHILDREN, policy=self.name, dropped=dropped, cap=by, at=run.label
            )
        if not searches:
            return False
        log.spawned += len(searches)
        # a child's own context: capped by max_thread_tokens, or what is left of its parent's
        cap = run.left if self.max_thread_tokens is None else min(self.max_thread_tokens, run.left)
        nodes = countdown_nodes(run.prompt, root_node(ctx))
        level = depth + 1
        paths = [f"{path}.{i}" if path else str(i) for i in range(len(searches))]
        kids = run.spawn(
            [
                (f"{run.label}/{i}", self._head(ctx, child_prompt(s.task, nodes)))
                for i, s in enumerate(searches)
            ],
            cap,
        )
        await asyncio.gather(
            *(
                self._trace(ctx, kid, sampling, depth=level, path=p, log=log)
                for kid, p in zip(kids, paths, strict=True)
            )
        )
        results = [
            ChildResult(
                f"#{node_id(s.task)}" if node_id(s.task) is not None else p,
                level,
                search_result(kid.text),
            )
            for s, kid, p in zip(searches, kids, paths, strict=True)
        ]
        # the calling block leaves the parent's context; the parent's cap counts only what it
        # decodes itself (a child that decoded nothing: the join waits on the spawn itself)
        run.join(kids, joined_text(results), keep=start)
        log.spawns.append(
            {
                "label": run.label,
                "depth": depth,
                "tasks": [s.task for s in searches],
                "dropped": dropped,
                "child_tokens": [k.chain.tokens for k in kids],
                "solved": [r.result is not None for r in results],
            }
        )
        return True


def raw_head(ctx: Context, text: str) -> str:
    """`text` as APR's evaluator sends it to a completion endpoint: the tokenizer's BOS token
    (as text) in front, no chat template; no BOS for a generator without a tokenizer."""
    tokenizer = getattr(ctx.generator, "tokenizer", None)
    bos = getattr(tokenizer, "bos_token", None)
    return (bos if isinstance(bos, str) else "") + text
