"""Parallel reasoning threads: rollouts that fork into concurrent threads and join back.

`search=threads` with `search.policy` = threadweaver | apr | fork_join | hogwild
(docs/threads.md).
"""

from search.threads.controller import POLICIES, Threads

__all__ = ["POLICIES", "Threads"]
