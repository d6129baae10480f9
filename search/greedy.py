"""The greedy baseline: one sample at temperature 0."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from search.best_of_n import BestOfN

log = logging.getLogger(__name__)


@dataclass
class Greedy(BestOfN):
    """Temperature-0 decoding: what the model says without any search.

    `n` is accepted so that a sweep over `search.n` can include greedy, but greedy always
    takes exactly one sample (and records n=1).
    """

    name: ClassVar[str] = "greedy"
    # settings greedy fixes (one sample at T=0, majority of one) and leaves out of its config
    fixed_keys: ClassVar[tuple[str, ...]] = (
        "temperature",
        "top_p",
        "aggregate",
        "step_reduction",
        "batch_size",
    )

    n: int = 1
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.n != 1:
            log.warning("search=greedy takes one sample; ignoring search.n=%s", self.n)
        self.n, self.temperature, self.top_p, self.aggregate = 1, 0.0, 1.0, "majority"
        super().__post_init__()
