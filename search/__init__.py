"""Search controllers: each has `async run(problem, ctx) -> Outcome`."""

from search.best_of_n import BestOfN
from search.greedy import Greedy

__all__ = ["BestOfN", "Greedy"]
