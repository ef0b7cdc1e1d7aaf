"""NSGA-II over a space's choices: a known Pareto front, constraints, pNSGA-III protection, state round trip."""

from __future__ import annotations

import itertools
import statistics

import pytest

from lightning_nas.arch import Choice, validate_arch
from lightning_nas.search import NSGA2, Constraint, RandomSearch, Trial, pareto_front, rank_trials, run_search

CHOICES = [Choice(f"layer{i}/width", (0, 1, 2, 3)) for i in range(6)]
OBJECTIVES = {"accuracy": "max", "params": "min"}
WEIGHTS = (5.0, 3.0, 4.0, 1.0, 2.0, 6.0)


def evaluate(arch: dict) -> dict[str, float]:
    """Accuracy saturates with width, params grow quadratically: a real trade-off with a known front."""
    values = [arch[c.name] for c in CHOICES]
    accuracy = sum(w * (1 - 0.5**v) for w, v in zip(WEIGHTS, values))
    return {"accuracy": accuracy, "params": float(sum(v * v for v in values))}


def true_front() -> set[tuple[float, float]]:
    every = [
        Trial(dict(zip([c.name for c in CHOICES], values)), {}) for values in itertools.product(range(4), repeat=6)
    ]
    for trial in every:
        trial.metrics = evaluate(trial.arch)
    return {(t.metrics["accuracy"], t.metrics["params"]) for t in pareto_front(every, OBJECTIVES)}


def hypervolume(trials: list[Trial]) -> float:
    """Area dominated by the front in (params, accuracy) up to the reference point (max params, accuracy 0)."""
    points = sorted({(t.metrics["params"], t.metrics["accuracy"]) for t in pareto_front(trials, OBJECTIVES)})
    reference = 6 * 9.0
    # staircase: each front point owns the rectangle from its params to the next larger model's params
    return sum(acc * (nxt - params) for (params, acc), (nxt, _) in zip(points, points[1:] + [(reference, 0.0)]))


def test_nsga2_front_beats_random_search_and_finds_the_true_front() -> None:
    truth = true_front()  # brute force over all 4**6 architectures

    def on_true_front(trials: list[Trial]) -> int:
        return len({(t.metrics["accuracy"], t.metrics["params"]) for t in pareto_front(trials, OBJECTIVES)} & truth)

    nsga, random = [], []
    for seed in range(4):
        strategy = NSGA2(CHOICES, objectives=OBJECTIVES, population_size=20, seed=seed)
        run_search(strategy, evaluate, 300)
        baseline = RandomSearch(CHOICES, seed=seed)
        run_search(baseline, evaluate, 300)
        nsga.append((hypervolume(strategy.history), on_true_front(strategy.history)))
        random.append((hypervolume(baseline.history), on_true_front(baseline.history)))
    print(f"hypervolume / true-front points found: NSGA-II {nsga}, random {random}, true front {len(truth)}")
    assert statistics.mean(h for h, _ in nsga) > statistics.mean(h for h, _ in random)
    assert statistics.mean(n for _, n in nsga) > 3 * max(1, statistics.mean(n for _, n in random))


def test_every_proposal_is_valid_and_meets_the_constraint() -> None:
    budget = Constraint("params", lambda arch: evaluate(arch)["params"], limit=12.0)
    strategy = NSGA2(CHOICES, objectives=OBJECTIVES, population_size=10, constraints=[budget], seed=1)
    for _ in range(120):
        arch = strategy.ask()
        assert validate_arch(arch, CHOICES) == arch
        assert evaluate(arch)["params"] <= 12.0
        strategy.tell(arch, evaluate(arch))


def test_protection_keeps_a_large_model_that_improves_fast() -> None:
    # the big model (params 9) is the least accurate now but gains the most: plain NSGA-II ranks it last
    trials = [
        Trial({"x": 0}, {"accuracy": 0.80, "accuracy_gain": 0.01, "params": 1.0}),
        Trial({"x": 1}, {"accuracy": 0.78, "accuracy_gain": 0.02, "params": 2.0}),
        Trial({"x": 2}, {"accuracy": 0.70, "accuracy_gain": 0.01, "params": 3.0}),
        Trial({"x": 3}, {"accuracy": 0.60, "accuracy_gain": 0.20, "params": 9.0}),
    ]
    plain = rank_trials(trials, OBJECTIVES)
    protected = rank_trials(trials, OBJECTIVES, {"accuracy_gain": "max", "params": "min"})
    assert plain == [[0], [1], [2], [3]]
    assert protected[:2] == [[0], [1, 3]]


def test_state_round_trip_continues_exactly() -> None:
    def run(strategy: NSGA2, n: int) -> list[dict]:
        return [strategy.tell(a, evaluate(a)).arch for a in (strategy.ask() for _ in range(n))]

    expected = run(NSGA2(CHOICES, objectives=OBJECTIVES, population_size=6, seed=3), 40)
    first = NSGA2(CHOICES, objectives=OBJECTIVES, population_size=6, seed=3)
    head = run(first, 23)  # mid-generation: some offspring told, population not yet replaced
    resumed = NSGA2(CHOICES, objectives=OBJECTIVES, population_size=6, seed=77)
    resumed.load_state_dict(first.state_dict())
    assert [t.arch for t in resumed.population] == [t.arch for t in first.population]
    assert len(resumed.offspring) == 23 - 18 == len(first.offspring)
    assert head + run(resumed, 17) == expected


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"objectives\['params'\] must be 'max' or 'min', got 'smallest'"):
        NSGA2(CHOICES, objectives={"accuracy": "max", "params": "smallest"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="population_size must be >= 2"):
        NSGA2(CHOICES, population_size=1)
    with pytest.raises(KeyError, match=r"lack the objectives \['params'\]"):
        NSGA2(CHOICES).tell(NSGA2(CHOICES).ask(), {"accuracy": 1.0})
