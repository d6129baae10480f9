"""The search tree: every chain a search touched, as a networkx DiGraph exported to traces."""

from __future__ import annotations

from typing import Any

import networkx as nx

from reasoning.types import Chain

ROOT = "root"


class SearchTree:
    """Nodes are chain ids; edges go parent -> child. Node data holds the step and its fate."""

    def __init__(self) -> None:
        self.graph = nx.DiGraph()
        self.graph.add_node(ROOT, step="", status="root")

    def add(self, chain: Chain, status: str = "expanded", **data: Any) -> None:
        parent = chain.parent if chain.parent in self.graph else ROOT
        self.graph.add_node(
            chain.id,
            step=chain.steps[-1] if chain.steps else "",
            depth=len(chain.steps),
            scores=list(chain.scores),
            tokens=chain.tokens,
            finished=chain.finished,
            finish_reason=chain.finish_reason,
            status=status,
            **data,
        )
        self.graph.add_edge(parent, chain.id)

    def mark(self, chain_id: str, status: str, **data: Any) -> None:
        self.graph.nodes[chain_id].update(status=status, **data)

    def path(self, chain_id: str) -> list[str]:
        """Node ids from the root to `chain_id`."""
        return nx.shortest_path(self.graph, ROOT, chain_id)

    def __len__(self) -> int:
        return self.graph.number_of_nodes() - 1

    def to_json(self) -> dict[str, Any]:
        return nx.node_link_data(self.graph, edges="edges")
