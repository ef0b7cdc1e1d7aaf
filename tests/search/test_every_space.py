"""Every strategy on every space with a discrete view: valid architectures, constraints met, metrics attached.

The strategies only see a space's choices, so one definition of mutation and crossover must serve the DARTS
cell, NAS-Bench-201, the ENAS macro space and the elastic MobileNetV3 alike; the supernet evaluator must score
any of them (with BatchNorm recalibration), and the cost model must count any of them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import pytest
import torch

from lightning_nas.sampling import sample_arch
from lightning_nas.search import (
    NSGA2,
    CostModel,
    RandomSearch,
    RegularizedEvolution,
    SearchStrategy,
    SupernetEvaluator,
    with_metrics,
)
from lightning_nas.spaces import (
    ElasticMobileNetV3,
    EnasMacroSpace,
    NasBench201Space,
    SearchSpace,
)
from tests.tiny import tiny_darts_space

SPACES: dict[str, Callable[[], SearchSpace]] = {
    "darts": lambda: tiny_darts_space(num_classes=3, layers=2),
    "nb201": lambda: NasBench201Space(in_channels=1, num_classes=3, channels=4, cells_per_stage=1),
    "enas-macro": lambda: EnasMacroSpace(in_channels=1, num_classes=3, channels=4, layers=4),
    "elastic": lambda: ElasticMobileNetV3(
        in_channels=1,
        num_classes=3,
        preset="cifar",
        kernel_sizes=(3, 5),
        expand_ratios=(3, 6),
        depths=(1, 2),
        resolutions=(24, 32),
        widths=(8,) * 7 + (16, 16),
    ),
}
STRATEGIES: dict[str, Callable[..., SearchStrategy]] = {
    "random": lambda choices, constraints: RandomSearch(choices, constraints=constraints, seed=1),
    "evolution": lambda choices, constraints: RegularizedEvolution(
        choices, population_size=4, sample_size=2, constraints=constraints, seed=1
    ),
    "nsga2": lambda choices, constraints: NSGA2(choices, population_size=4, constraints=constraints, seed=1),
}


@pytest.mark.parametrize("space_name", SPACES)
def test_every_strategy_searches_every_space_within_a_params_limit(space_name: str) -> None:
    space = SPACES[space_name]()
    choices = space.choices()
    costs = CostModel(space, image_size=16)
    generator = torch.Generator().manual_seed(0)
    limit = statistics.median(costs.params(sample_arch(choices, generator)) for _ in range(9))
    batches = [(torch.randn(4, 1, 16, 16), torch.randint(3, (4,))) for _ in range(2)]
    evaluate = with_metrics(
        SupernetEvaluator(space, batches, calibration_batches=[x for x, _ in batches]),
        params=costs.params,
        flops=costs.flops,
    )
    for strategy_name, make in STRATEGIES.items():
        strategy = make(choices, [costs.constraint("params", limit)])
        for _ in range(6):
            arch = strategy.ask()
            assert space.validate_arch(arch) == arch, (space_name, strategy_name)
            assert costs.params(arch) <= limit, (space_name, strategy_name, costs.params(arch), limit)
            metrics = evaluate(arch)
            assert 0.0 <= metrics["accuracy"] <= 1.0
            assert metrics["flops"] > 0
            strategy.tell(arch, metrics)
        assert strategy.best().metrics["params"] <= limit
        assert len({str(sorted(t.arch.items())) for t in strategy.history}) > 1  # it did move through the space


def test_elastic_costs_count_the_exported_subnet() -> None:
    """The cost model's params on the elastic space equal the parameters of the standalone exported subnet."""
    space = SPACES["elastic"]()
    assert isinstance(space, ElasticMobileNetV3)
    costs = CostModel(space, image_size=16)
    generator = torch.Generator().manual_seed(3)
    for _ in range(3):
        arch = sample_arch(space.choices(), generator)
        assert costs.params(arch) == sum(p.numel() for p in space.export_subnet(arch).parameters())
