"""Thought trimming: samplers that watch a model think and cut the thinking short.

The generation layer between a controller and the generator: it imports only `reasoning/`,
and `search/` does not import it (Hydra puts the two together). Select one with `+trim=NAME`
(conf/trim); it is refused for a controller that decodes its own prompts. See
docs/thought-trimming.md.
"""

from trim.budget_forcing import BudgetForcing
from trim.solve_detect import SolveDetect
from trim.trimmer import Cut, Trimmer, Watch
from trim.trimr import TrimR

TRIMMERS: dict[str, type[Trimmer]] = {cls.name: cls for cls in (TrimR, SolveDetect, BudgetForcing)}

__all__ = ["TRIMMERS", "BudgetForcing", "Cut", "SolveDetect", "TrimR", "Trimmer", "Watch"]
