"""Search strategies over any space's choices: ask for an architecture, tell its score."""

from lightning_nas.search.base import Constraint, ConstraintError, SearchStrategy, Trial, run_search
from lightning_nas.search.evolution import RegularizedEvolution
from lightning_nas.search.random import RandomSearch

__all__ = [
    "Constraint",
    "ConstraintError",
    "RandomSearch",
    "RegularizedEvolution",
    "SearchStrategy",
    "Trial",
    "run_search",
]
