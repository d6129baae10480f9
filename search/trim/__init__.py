"""Thought trimming: samplers that watch a model think and cut the thinking short.

Select one with `+trim=NAME` (conf/trim); see docs/thought-trimming.md.
"""

from search.trim.budget import BudgetForcing
from search.trim.sdv import SolveDetect
from search.trim.trimr import TrimR
from search.trim.watch import Cut, Trimmer, Watch

TRIMMERS: dict[str, type[Trimmer]] = {cls.name: cls for cls in (TrimR, SolveDetect, BudgetForcing)}

__all__ = ["TRIMMERS", "BudgetForcing", "Cut", "SolveDetect", "TrimR", "Trimmer", "Watch"]
