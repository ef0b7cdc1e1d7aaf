import statistics

import pytest

from lightning_nas.arch import Choice, validate_arch
from lightning_nas.search import (
    Constraint,
    ConstraintError,
    RandomSearch,
    RegularizedEvolution,
    SearchStrategy,
    run_search,
)

# 10 choices of 4 values: 4**10 ~ 1e6 architectures, one optimum (every choice at its target value)
CHOICES = [Choice(f"layer{i}/op", ("a", "b", "c", "d")) for i in range(10)]
TARGET = {c.name: "abcd"[i % 4] for i, c in enumerate(CHOICES)}


def matches(arch):
    return {"accuracy": float(sum(arch[k] == v for k, v in TARGET.items()))}


def evaluations_to_optimum(strategy: SearchStrategy, limit: int = 3000) -> int:
    for n in range(1, limit + 1):
        arch = strategy.ask()
        assert validate_arch(arch, CHOICES) == arch
        if strategy.tell(arch, matches(arch)).metrics["accuracy"] == len(CHOICES):
            return n
    return limit


def test_regularized_evolution_finds_the_optimum_in_fewer_evaluations_than_random_search():
    evolution = [
        evaluations_to_optimum(RegularizedEvolution(CHOICES, population_size=20, sample_size=5, seed=s))
        for s in range(5)
    ]
    random = [evaluations_to_optimum(RandomSearch(CHOICES, seed=s)) for s in range(5)]
    # random search needs ~4**10 draws on average, so it always hits the cap; evolution climbs one match at a time
    assert max(evolution) < 3000
    assert statistics.mean(evolution) < statistics.mean(random) / 3


def test_constraints_are_met_by_every_proposal_and_an_impossible_one_names_the_best_value():
    cost = Constraint("cost", lambda arch: float(sum(v == "d" for v in arch.values())), limit=1.0)
    for strategy in (RandomSearch(CHOICES, constraints=[cost]), RegularizedEvolution(CHOICES, constraints=[cost])):
        for _ in range(200):
            arch = strategy.ask()
            assert cost.satisfied(arch)
            strategy.tell(arch, matches(arch))

    impossible = Constraint("cost", lambda arch: 5.0 + sum(v == "d" for v in arch.values()), limit=2.0)
    with pytest.raises(ConstraintError, match=r"cost <= 2 \(smallest found: 5\)"):
        RandomSearch(CHOICES, constraints=[impossible], max_tries=50).ask()


def test_state_round_trip_continues_exactly():
    def run(strategy, n):
        return [strategy.tell(a, matches(a)).arch for a in (strategy.ask() for _ in range(n))]

    full = RegularizedEvolution(CHOICES, population_size=10, sample_size=3, seed=4)
    expected = run(full, 40)

    first = RegularizedEvolution(CHOICES, population_size=10, sample_size=3, seed=4)
    head = run(first, 25)
    resumed = RegularizedEvolution(CHOICES, population_size=10, sample_size=3, seed=999)
    resumed.load_state_dict(first.state_dict())
    assert head + run(resumed, 15) == expected
    assert [t.arch for t in resumed.population] == expected[-10:]


def test_min_mode_and_bad_arguments():
    choices = [Choice("x", tuple(range(20)))]
    best = run_search(RandomSearch(choices, metric="loss", mode="min", seed=1), lambda a: {"loss": a["x"]}, 60)
    assert best.arch == {"x": 0}
    with pytest.raises(ValueError, match="no choices"):
        RandomSearch([])
    with pytest.raises(ValueError, match="sample_size <= population_size"):
        RegularizedEvolution(choices, population_size=5, sample_size=6)
    with pytest.raises(KeyError, match="must contain 'accuracy'"):
        RandomSearch(choices).tell({"x": 1}, {"acc": 1.0})
    with pytest.raises(ValueError, match="choice 'x' got 99"):
        RandomSearch(choices).tell({"x": 99}, {"accuracy": 1.0})
