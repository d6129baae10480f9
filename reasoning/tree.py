"""The search tree: every chain a search touched, as a networkx DiGraph exported to traces.

Controllers change it only through its verbs (`add`, `annotate`, `mark_*`), so every trace
uses one vocabulary of node statuses (`NodeStatus`) and finish reasons (`FinishReason`), and a
node may have several parents (a join of parallel threads). docs/data-model.md describes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import networkx as nx

from reasoning.types import Chain

ROOT = "root"


class NodeStatus(StrEnum):
    """What became of a node. A StrEnum, so traces hold plain strings."""

    ROOT = "root"
    EXPANDED = "expanded"  # open: generated, may grow further
    FINISHED = "finished"  # a complete solution (EOS, boxed answer, step cap, ...)
    PRUNED = "pruned"  # dropped by the search (lost a selection, duplicate, cut by budget)
    SELECTED = "selected"  # kept by a selection, or the final answer's chain
    RESAMPLED = "resampled"  # drawn (possibly several times) by particle resampling
    LOOKAHEAD = "lookahead"  # a rollout used only to score a candidate, then dropped
    TRIMMED = "trimmed"  # generation stopped early by a trimming rule
    FORKED = "forked"  # spawned parallel threads
    JOINED = "joined"  # the continuation that merges several threads


class SearchTree:
    """Nodes are chain ids; edges go parent -> child. Node data holds the step and its fate."""

    def __init__(self) -> None:
        self._graph = nx.DiGraph()
        self._graph.add_node(ROOT, step="", status=NodeStatus.ROOT)

    @property
    def graph(self) -> nx.DiGraph:
        """A read-only view of the graph (change it through the tree's verbs)."""
        return self._graph.copy(as_view=True)

    def add(
        self,
        chain: Chain,
        status: NodeStatus | str = NodeStatus.EXPANDED,
        *,
        parents: Sequence[str] | None = None,
        generated: int | None = None,
        **data: Any,
    ) -> None:
        """Record `chain` under its parent, or under each of `parents` (a join).

        `generated` is what the node itself decoded, beyond what it continues: by default the
        chain's tokens less its first parent's. A join must say it (its chain holds every
        thread's tokens, but only its own continuation was decoded after them).
        """
        if parents is None:
            parents = [chain.parent if chain.parent in self._graph else ROOT]
        missing = [p for p in parents if p not in self._graph]
        if missing or not parents:
            raise KeyError(f"cannot add {chain.id}: unknown parents {missing or '[]'}")
        if generated is None:
            first = self._graph.nodes[parents[0]]
            generated = chain.tokens - int(first.get("tokens", 0))
        self._graph.add_node(
            chain.id,
            step=chain.steps[-1] if chain.steps else "",
            depth=len(chain.steps),
            scores=list(chain.scores),
            tokens=chain.tokens,
            finished=chain.finished,
            finish_reason=chain.finish_reason,
            status=NodeStatus(status),
            generated=generated,
            **data,
        )
        for parent in parents:
            self._graph.add_edge(parent, chain.id)

    def annotate(self, chain_id: str, **data: Any) -> None:
        """Attach facts to a node (scores, f/g/h, weights, ...) without changing its status."""
        if "status" in data:
            raise ValueError("set a node's status with mark(), not annotate()")
        self._node(chain_id).update(data)

    def mark(self, chain_id: str, status: NodeStatus | str, **data: Any) -> None:
        """Set a node's status (one of NodeStatus) and attach facts."""
        self._node(chain_id).update(status=NodeStatus(status), **data)

    def mark_pruned(self, chain_id: str, **data: Any) -> None:
        self.mark(chain_id, NodeStatus.PRUNED, **data)

    def mark_selected(self, chain_id: str, **data: Any) -> None:
        self.mark(chain_id, NodeStatus.SELECTED, **data)

    def mark_finished(self, chain_id: str, **data: Any) -> None:
        self.mark(chain_id, NodeStatus.FINISHED, **data)

    def node(self, chain_id: str) -> Mapping[str, Any]:
        """A read-only view of one node's data."""
        return MappingProxyType(self._node(chain_id))

    def status(self, chain_id: str) -> NodeStatus:
        return NodeStatus(self._node(chain_id)["status"])

    def parents(self, chain_id: str) -> list[str]:
        return list(self._graph.predecessors(chain_id))

    def path(self, chain_id: str) -> list[str]:
        """Node ids from the root to `chain_id` (through the first parent of a join)."""
        return nx.shortest_path(self._graph, ROOT, chain_id)

    def critical_path_tokens(self) -> int:
        """Tokens on the longest chain of decoding that had to happen one after another.

        Each node is decoded after all its parents: a join waits for its longest thread, so a
        fork-join block costs its longest thread, not the sum (the latency measure of parallel
        reasoning, docs/threads.md). Only data dependencies count: a search that waits for a
        whole round before choosing (beam, particles) is not charged for the waiting.
        """
        done: dict[str, int] = {}
        for node in nx.topological_sort(self._graph):
            starts = [done[p] for p in self._graph.predecessors(node)]
            own = int(self._graph.nodes[node].get("generated") or 0)
            # a fork inside a parent (HyPER's token forks) gives back the tokens it cut
            done[node] = max(0, max(starts, default=0) + own)
        return max(done.values(), default=0)

    def __contains__(self, chain_id: object) -> bool:
        return chain_id in self._graph

    def __len__(self) -> int:
        return self._graph.number_of_nodes() - 1

    def to_json(self) -> dict[str, Any]:
        return nx.node_link_data(self._graph, edges="edges")

    def _node(self, chain_id: str) -> dict[str, Any]:
        if chain_id not in self._graph:
            raise KeyError(f"no node {chain_id!r} in the search tree")
        return self._graph.nodes[chain_id]
