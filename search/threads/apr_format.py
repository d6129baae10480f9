"""APR's text format (Pan et al., arXiv 2504.15466): calling blocks, Countdown search nodes
and the results block a join writes (search/threads/apr.py runs the policy on it).

Format knowledge only, no generation: reading the last calling block of a trace, the Countdown
nodes a trace describes (the reference's child prompts), a child's result and the join's exact
lines.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from reasoning.answers import any_box_closed
from reasoning.context import Context

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
