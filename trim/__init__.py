"""Thought trimming: samplers that watch a model think and cut the thinking short.

Select one with `+trim=NAME` (conf/trim); see docs/thought-trimming.md.
"""

from trim.budget_forcing import BudgetForcing
from trim.solve_detect import SolveDetect
from trim.trimmer import Cut, Trimmer, Watch
from trim.trimr import TrimR

TRIMMERS: dict[str, type[Trimmer]] = {cls.name: cls for cls in (TrimR, SolveDetect, BudgetForcing)}

__all__ = ["TRIMMERS", "BudgetForcing", "Cut", "SolveDetect", "TrimR", "Trimmer", "Watch"]
