"""Search controllers: each has a config `name`, `verifier_use` and `async run(problem, ctx)`.

Shared keys and their validation: search/settings.py; adding one: docs/adding-a-controller.md.
"""

from search.adaptive_sc import AdaptiveSC
from search.astar import AStar
from search.beam import Beam
from search.best_of_n import BestOfN
from search.deepconf import DeepConf
from search.dvts import DVTS
from search.greedy import Greedy
from search.hyper import HyPER
from search.mcts import MCTS
from search.particle_filter import ParticleFilter
from search.particle_gibbs import ParticleGibbs
from search.threads import Threads

__all__ = [
    "DVTS",
    "AdaptiveSC",
    "AStar",
    "Beam",
    "BestOfN",
    "DeepConf",
    "Greedy",
    "HyPER",
    "MCTS",
    "ParticleFilter",
    "ParticleGibbs",
    "Threads",
]
