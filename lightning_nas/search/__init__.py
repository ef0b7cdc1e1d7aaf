"""Search strategies over any space's choices: ask for an architecture, tell its score."""

from lightning_nas.search.bananas import Bananas, default_encoding
from lightning_nas.search.base import Constraint, ConstraintError, SearchStrategy, Trial, run_search
from lightning_nas.search.coarse_to_fine import CoarseToFineSearch, reference_grid
from lightning_nas.search.constraints import AnalyticCost, Cost, CostModel, count_cost, count_network_cost
from lightning_nas.search.controller import PolicySearch
from lightning_nas.search.evaluators import (
    Evaluator,
    SupernetEvaluator,
    collect_batches,
    recalibrate_batchnorm,
    with_metrics,
)
from lightning_nas.search.evolution import RegularizedEvolution
from lightning_nas.search.latency import (
    LatencyTable,
    build_latency_table,
    measure_latency,
    measure_network_latency,
    space_identity,
)
from lightning_nas.search.nsga2 import NSGA2, pareto_front, rank_trials, select_survivors
from lightning_nas.search.pnas import ProgressiveSearch, default_levels, nasbench201_complete
from lightning_nas.search.random import RandomSearch
from lightning_nas.search.reinforce import ReinforceSearch
from lightning_nas.search.tabular import ArchFormat, TabularBenchmark, TabularSearchResult, run_budgeted_search

__all__ = [
    "ProgressiveSearch",
    "default_levels",
    "nasbench201_complete",
    "Bananas",
    "default_encoding",
    "ArchFormat",
    "AnalyticCost",
    "Cost",
    "CostModel",
    "Evaluator",
    "LatencyTable",
    "SupernetEvaluator",
    "build_latency_table",
    "collect_batches",
    "count_cost",
    "count_network_cost",
    "measure_network_latency",
    "measure_latency",
    "recalibrate_batchnorm",
    "space_identity",
    "with_metrics",
    "NSGA2",
    "PolicySearch",
    "CoarseToFineSearch",
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
    "pareto_front",
    "rank_trials",
    "reference_grid",
    "run_search",
    "select_survivors",
]
