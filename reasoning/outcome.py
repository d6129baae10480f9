"""What a controller returns for one problem: the answer, the chains behind it, and their cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reasoning.budget import Ledger
from reasoning.tree import SearchTree
from reasoning.types import Chain


@dataclass
class Outcome:
    """What a controller returns for one problem."""

    answer: str | None
    chain: Chain | None
    chains: list[Chain]
    ledger: Ledger
    tree: SearchTree
    stopped_by: str | None = None  # the budget limit that stopped the search, if any
    details: dict[str, Any] = field(default_factory=dict)
