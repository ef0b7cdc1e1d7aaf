"""Search strategies over any space's choices: ask for an architecture, tell its score."""

from lightning_nas.search.base import Constraint, ConstraintError, SearchStrategy, Trial, run_search
from lightning_nas.search.evolution import RegularizedEvolution
from lightning_nas.search.random import RandomSearch
from lightning_nas.search.reinforce import ReinforceSearch
from lightning_nas.search.tabular import ArchFormat, TabularBenchmark, TabularSearchResult, run_budgeted_search

__all__ = [
    "ArchFormat",
    "Constraint",
    "ConstraintError",
    "RandomSearch",
    "RegularizedEvolution",
    "ReinforceSearch",
    "SearchStrategy",
    "TabularBenchmark",
    "TabularSearchResult",
    "Trial",
    "run_budgeted_search",
    "run_search",
]
