"""Parallel reasoning threads: rollouts that fork into concurrent threads and join back.

`search=threads` with `search/strategy=` threadweaver | apr | fork_join | hogwild
(docs/threads.md).
"""

from search.threads.controller import STRATEGIES, Threads

__all__ = ["STRATEGIES", "Threads"]
