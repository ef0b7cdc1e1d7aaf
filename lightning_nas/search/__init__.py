"""Search strategies over any space's choices: ask for an architecture, tell its score."""

from lightning_nas.search.base import Constraint, ConstraintError, SearchStrategy, Trial, run_search
from lightning_nas.search.constraints import AnalyticCost, Cost, CostModel, count_cost
from lightning_nas.search.evaluators import (
    Evaluator,
    SupernetEvaluator,
    collect_batches,
    recalibrate_batchnorm,
    with_metrics,
)
from lightning_nas.search.evolution import RegularizedEvolution
from lightning_nas.search.latency import LatencyTable, build_latency_table, measure_latency, space_identity
from lightning_nas.search.nsga2 import NSGA2, pareto_front, rank_trials, select_survivors
from lightning_nas.search.random import RandomSearch

__all__ = [
    "AnalyticCost",
    "Cost",
    "CostModel",
    "Evaluator",
    "LatencyTable",
    "SupernetEvaluator",
    "build_latency_table",
    "collect_batches",
    "count_cost",
    "measure_latency",
    "recalibrate_batchnorm",
    "space_identity",
    "with_metrics",
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
