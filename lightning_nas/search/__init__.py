"""Search strategies over any space's choices: ask for an architecture, tell its score."""

from lightning_nas.search.base import Constraint, ConstraintError, SearchStrategy, Trial, run_search
from lightning_nas.search.evolution import RegularizedEvolution
from lightning_nas.search.nsga2 import NSGA2, pareto_front, rank_trials, select_survivors
from lightning_nas.search.random import RandomSearch

__all__ = [
    "NSGA2",
    "Constraint",
    "ConstraintError",
    "RandomSearch",
    "RegularizedEvolution",
    "SearchStrategy",
    "Trial",
    "pareto_front",
    "rank_trials",
    "run_search",
    "select_survivors",
]
