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
- Prompts. Every context is rendered in the problem's chat template (`ctx.render_question`
  for a child). The default `prefix` forces a generic calling block of two sub-tasks so that a
  model not trained on the format still spawns (a trained model: set `prefix` to ""). The
  optional `Sub Call Budget: {k} ` is forced before the prefix, at the start of the root's
  answer (the reference prepends it to the root prompt).
- Countdown nodes. The reference's root prompt is the root state `Moving to Node #0 ...`; ours
  is the natural-language question, so a Countdown problem (metadata `numbers`, `target`) seeds
  node `#0` from its metadata. A `Generated Node` whose parent is unknown is skipped (the
  reference fails the whole call with a KeyError); a task naming an unknown node keeps its
  text as the child's prompt.
- Results. `Goal Reached` counts only the model's own marks, never the `<Goal Reached in Sub
  Search ...>` lines of a nested join. A child with fewer than two marks (an untrained model)
  gives its last paragraph with a closed `\\boxed{...}`, else no solution.
- Join lines. `i` is the child's position among those spawned and `level` the child's real depth
  (the reference hard-codes level 1: it never nests). `Node` is `#<id>` for a task naming a
  Countdown node, otherwise the child's dotted index path (`0`, `1`, nested `0.1`).
- Malformed blocks (no opening line, a broken start line, no start line) are not expanded: the
  rollout goes on decoding sequentially and a `fallback` event says why (the reference fails
  the whole rollout on a block it cannot read).
- Token caps. Each context is capped separately, as the reference caps each request: a
  parent's `Rollout.left` counts what the parent itself decoded (a removed calling block
  included), not its children, whose tokens live in their own contexts. A child may decode up
  to `max_child_tokens`, by default what is left of its parent's cap at the spawn (the
  reference gives every request one fixed cap). The Context's budget bounds the sum.
"""

from __future__ import annotations

import ast
import asyncio
import re
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from reasoning.answers import any_box_closed
from reasoning.context import Context
from reasoning.settings import Count, OptionalCount, OptionalNonNegativeCount
from reasoning.tree import NodeStatus
from reasoning.types import Chain, EventKind, Sampling
from search.settings import (
    MaxThreadTokens,
    Prefix,
    StrategySettings,
    settings,
)
from search.threads.runtime import (
    Rollout,
    RolloutResult,
    continuation,
)

CALL_OPEN = "<Calling Sub Searches>"
CALL_CLOSE = "<End Calling Sub Searches>"
RESULTS_OPEN = "<Sub Searches>"
RESULTS_CLOSE = "<End Sub Searches>"
START_MARK = "<Start Sub Search"
GOAL = "Goal Reached"
MOVE = "Moving to Node #"

START_LINE = re.compile(r"<Start Sub Search (\d+) at level (\d+)>[ \t]*(.*)")
STATE_LINE = re.compile(r"Current State:\s*(-?\d+):\[([^\]]*)\],\s*Operations:\s*(\[.*\])\s*")
GENERATED_LINE = re.compile(r"Generated Node #([^:]+):\s*(-?\d+):\[([^\]]*)\]\s*Operation:\s*(\S+)")
# a model's own "Goal Reached", not the "<Goal Reached in Sub Search ...>" line of a join
OWN_GOAL = re.compile(r"(?<!<)" + GOAL)
MAX_LITERAL_CHARS = 4000  # longer "operations" lists are refused unparsed

# Control text for a model not trained on the format: a calling block of two sub-tasks that make
# sense for any question, so real requests spawn and join ({question}: the problem's question).
DEFAULT_PREFIX = (
    f"{CALL_OPEN}\n"
    "<Start Sub Search 0 at level 1> Find the answer to: {question}\n"
    "<Start Sub Search 1 at level 1> Check the answer to: {question}\n"
    f"{CALL_CLOSE}"
)


class MalformedBlock(ValueError):
    """A calling block the policy cannot expand; its message is the fallback's reason."""


@dataclass(frozen=True)
class SubSearch:
    """One start line: the index and level the model wrote, and its task."""

    index: int
    level: int
    task: str


@dataclass(frozen=True)
class CallingBlock:
    """The last calling block of a text: where it starts (its opening line) and its lines."""

    start: int
    searches: list[SubSearch]


def calling_block(text: str) -> CallingBlock:
    """The last `<Calling Sub Searches>\\n ... <End Calling Sub Searches>` block of `text`.

    Only the last opening line counts (an unclosed earlier one is text, as in the reference);
    lines other than start lines are ignored, but a broken start line spoils the block, so a
    block is never expanded in part.
    """
    end = text.rfind(CALL_CLOSE)
    if end < 0:
        raise MalformedBlock("no end line")
    start = text.rfind(CALL_OPEN + "\n", 0, end)
    if start < 0:
        raise MalformedBlock("no opening line")
    body = text[start + len(CALL_OPEN) + 1 : end]
    searches = []
    for line in body.split("\n"):
        line = line.strip()
        if START_MARK not in line:
            continue
        m = START_LINE.fullmatch(line)
        if m is None or not m.group(3).strip():
            raise MalformedBlock(f"bad start line: {line[:200]!r}")
        searches.append(SubSearch(int(m.group(1)), int(m.group(2)), m.group(3).strip()))
    if not searches:
        raise MalformedBlock("no start lines")
    return CallingBlock(start, searches)


# --- Countdown nodes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A Countdown search node described in a trace: its state and the operations to reach it."""

    id: str
    target: int
    numbers: tuple[int, ...]
    operations: tuple[str, ...]

    def prompt(self) -> str:
        """The reference's child prompt for this node."""
        nums = ", ".join(map(str, self.numbers))
        return (
            f"{MOVE}{self.id}\nCurrent State: {self.target}:[{nums}], "
            f"Operations: {list(self.operations)!r}"
        )


def _numbers(raw: str) -> tuple[int, ...] | None:
    parts = [p.strip() for p in raw.split(",")] if raw.strip() else []
    if not all(re.fullmatch(r"-?\d+", p) for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _operations(raw: str) -> tuple[str, ...] | None:
    """A Python list of strings, read with `ast.literal_eval` (never evaluated)."""
    if len(raw) > MAX_LITERAL_CHARS:
        return None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(value)


def countdown_nodes(trace: str, root: Node | None = None) -> dict[str, Node]:
    """Every node `trace` describes, by id: `Moving to Node` / `Current State` pairs first,
    then `Generated Node` lines not already known (their operations: the parent's plus theirs)."""
    nodes = {root.id: root} if root is not None else {}
    lines = trace.split("\n")
    for here, after in zip(lines, lines[1:], strict=False):
        if not here.startswith(MOVE):
            continue
        m = STATE_LINE.fullmatch(after.strip())
        nums = _numbers(m.group(2)) if m else None
        ops = _operations(m.group(3)) if m else None
        if m is None or nums is None or ops is None:
            continue
        node_id = here[len(MOVE) :].strip()
        nodes[node_id] = Node(node_id, int(m.group(1)), nums, ops)
    for line in lines:
        m = GENERATED_LINE.search(line)
        if m is None:
            continue
        node_id = m.group(1).strip()
        parent = nodes.get(node_id.rsplit(",", 1)[0]) if "," in node_id else None
        nums = _numbers(m.group(3))
        if node_id in nodes or parent is None or nums is None:
            continue
        nodes[node_id] = Node(node_id, int(m.group(2)), nums, (*parent.operations, m.group(4)))
    return nodes


def root_node(ctx: Context) -> Node | None:
    """Node #0 of a Countdown problem (the reference's root prompt), from its metadata."""
    meta = ctx.problem.metadata
    numbers, target = meta.get("numbers"), meta.get("target")
    if not isinstance(target, int) or not isinstance(numbers, list | tuple):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        return None
    return Node("0", target, tuple(numbers), ())


def node_id(task: str) -> str | None:
    """The node a `Moving to Node #<id>` task names, or None for any other task."""
    return task.split(MOVE, 1)[1].strip() if task.startswith(MOVE) else None


def child_prompt(task: str, nodes: dict[str, Node]) -> str:
    """What a child reads: the reference's node prompt for a known node, else the task."""
    ident = node_id(task)
    if ident is not None and ident in nodes:
        return nodes[ident].prompt()
    return task


# --- results and the join ----------------------------------------------------------------------


def search_result(text: str) -> str | None:
    """A child's result: with two or more `Goal Reached` marks, the text after the
    second-to-last one (the replayed path, less the one character after the mark, as the
    reference reads it); else the last paragraph with a closed `\\boxed{...}`; else None."""
    marks = [m.start() for m in OWN_GOAL.finditer(text)]
    if len(marks) >= 2:
        return text[marks[-2] + len(GOAL) + 1 :].rstrip()
    for paragraph in reversed(re.split(r"\n\s*\n", text)):
        if any_box_closed(paragraph):
            return paragraph.strip()
    return None


@dataclass(frozen=True)
class ChildResult:
    """One finished child as the join writes it."""

    node: str  # the join's "at Node" value
    level: int
    result: str | None


def joined_text(children: list[ChildResult]) -> str:
    """The results block that replaces the calling block (the reference's exact lines)."""
    out = RESULTS_OPEN + "\n"
    for i, c in enumerate(children):
        where = f"Sub Search {i} at level {c.level} at Node {c.node}"
        if c.result is None:
            out += f"<No Solution in {where}>\n"
        else:
            out += f"<Goal Reached in {where}>\n{c.result}\n"
    return out + RESULTS_CLOSE + "\n"


def trimmed(chain: Chain, keep: int) -> Chain:
    """`chain` whose text is cut to its first `keep` characters (same id: not a tree node).

    A rollout's chain only grows, but APR's join takes the calling block back out of the
    parent's context; the joined node extends this cut chain, under the spawn node."""
    steps: list[str] = []
    used = 0
    for step in chain.steps:
        if used >= keep:
            break
        steps.append(step[: keep - used])
        used += len(steps[-1])
    return replace(chain, steps=tuple(s for s in steps if s), finished=False, finish_reason=None)


# --- the policy --------------------------------------------------------------------------------


@dataclass
class _Log:
    """What one rollout's spawns did, for its details (children's spawns included)."""

    spawns: list[dict[str, Any]] = field(default_factory=list)
    fallbacks: int = 0


@settings
class APR(StrategySettings):
    """`search/strategy=apr`."""

    name: ClassVar[str] = "apr"

    prefix: Prefix = None  # {question}: the problem; null: a block of two generic sub-tasks
    sub_call_budget: OptionalNonNegativeCount = None
    """forces `Sub Call Budget: {k} ` first (APR's sub-call conditioning); null: none"""
    max_thread_tokens: MaxThreadTokens = None
    max_depth: Count = 1
    """rollouts up to this depth may spawn (1: only the root, as in APR)"""
    max_children: OptionalCount = None
    """children per calling block (the rest are dropped); null: no cap"""

    async def rollout(self, ctx: Context, sampling: Sampling, label: str) -> RolloutResult:
        run = Rollout.start(ctx, ctx.render(None), sampling.max_tokens, label=label)
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

    async def _trace(
        self, ctx: Context, run: Rollout, sampling: Sampling, *, depth: int, path: str, log: _Log
    ) -> None:
        """Decode `run` to its end, expanding every calling block it closes while it may."""
        may_spawn = depth < self.max_depth
        stops = (CALL_CLOSE, RESULTS_OPEN) if may_spawn else (RESULTS_OPEN,)
        since = 0  # where the text written since the last join starts
        block_done = may_spawn and run.text.rstrip().endswith(CALL_CLOSE)  # a forced block
        while run.ended is None:
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
            await self._spawn(ctx, run, sampling, since + block.start, block, depth, path, log)
            since = len(run.text)  # a child's result is never read as the parent's block
        if not may_spawn and CALL_CLOSE in run.text[since:]:
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
    ) -> None:
        """Run the block's children concurrently, then join their results in its place."""
        searches = block.searches
        dropped = 0
        if self.max_children is not None and len(searches) > self.max_children:
            dropped = len(searches) - self.max_children
            searches = searches[: self.max_children]
            ctx.record(EventKind.DROPPED_CHILDREN, policy=self.name, dropped=dropped)
        cap = run.left if self.max_thread_tokens is None else min(self.max_thread_tokens, run.left)
        spawn = run.chain
        ctx.tree.mark(spawn.id, NodeStatus.FORKED)
        ctx.record(EventKind.FORK, policy=self.name, at=spawn.id, threads=len(searches))
        nodes = countdown_nodes(run.prompt, root_node(ctx))
        level = depth + 1
        kids: list[Rollout] = []
        for i, search in enumerate(searches):
            kid = Rollout.start(
                ctx,
                ctx.render_question(child_prompt(search.task, nodes)),
                max(0, cap),
                parent=spawn.id,
                label=f"{run.label}/{i}",
                # the trajectory's first call starts its sample, whoever makes it
                new_sample=run.new_sample and i == 0,
            )
            kids.append(kid)
        run.new_sample = False
        paths = [f"{path}.{i}" if path else str(i) for i in range(len(kids))]
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
        # a child that decoded nothing has no node: the join then waits on the spawn itself
        parents = list(dict.fromkeys(k.chain.id if k.chain.steps else spawn.id for k in kids))
        tokens = sum(k.chain.tokens for k in kids)
        joined = trimmed(spawn, start).extend(joined_text(results), tokens=tokens)
        ctx.record(EventKind.JOIN, policy=self.name, threads=len(kids), at=spawn.id)
        ctx.tree.add(
            joined,
            NodeStatus.JOINED,
            parents=parents,
            generated=0,
            thread=run.label,
            removed=spawn.text[start:],
        )
        run.chain = joined  # the parent's cap counts only what it decodes itself
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
