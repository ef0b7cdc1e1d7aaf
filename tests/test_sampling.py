import math
from collections import Counter

import pytest
import torch

from lightning_nas.arch import Choice
from lightning_nas.sampling import crossover, derive_seed, mutate, sample_arch, step_generator

CHOICES = [Choice("a", ("x", "y", "z")), Choice("b", (0, 1)), Choice("c", ("only",))]


def test_same_seed_step_and_draw_give_the_same_arch_and_others_differ():
    draws = [sample_arch(CHOICES, step_generator(7, step, 0)) for step in range(50)]
    again = [sample_arch(CHOICES, step_generator(7, step, 0)) for step in range(50)]
    assert draws == again
    assert len({tuple(d.values()) for d in draws}) == 6  # all 3 * 2 * 1 combinations appear in 50 draws


def test_sample_arch_is_uniform():
    counts = Counter(sample_arch(CHOICES, step_generator(0, step))["a"] for step in range(3000))
    # each of 3 values: binomial(3000, 1/3), std ~ 25.8; 5 sigma bound
    for value in ("x", "y", "z"):
        assert abs(counts[value] - 1000) < 5 * math.sqrt(3000 * (1 / 3) * (2 / 3))


def test_mutate_changes_exactly_n_mutable_choices():
    parent = {"a": "x", "b": 0, "c": "only"}
    for step in range(20):
        child = mutate(parent, CHOICES, step_generator(1, step), num_mutations=1)
        assert sum(child[k] != parent[k] for k in parent) == 1
        assert child["c"] == "only"
        both = mutate(parent, CHOICES, step_generator(1, step), num_mutations=2)
        assert both["a"] != "x"
        assert both["b"] == 1
    with pytest.raises(ValueError, match=r"num_mutations must be in \[0, 2\]"):
        mutate(parent, CHOICES, step_generator(0, 0), num_mutations=3)


def test_crossover_takes_each_value_from_a_parent():
    a, b = {"a": "x", "b": 0, "c": "only"}, {"a": "z", "b": 1, "c": "only"}
    children = [crossover(a, b, CHOICES, step_generator(2, s)) for s in range(40)]
    assert all(child[k] in (a[k], b[k]) for child in children for k in a)
    assert {child["a"] for child in children} == {"x", "z"}
    with pytest.raises(ValueError, match="choice 'a' got 'w'"):
        crossover({"a": "w", "b": 0, "c": "only"}, b, CHOICES, step_generator(0, 0))


def test_derive_seed_depends_on_every_part():
    assert derive_seed(0, 1, 2) != derive_seed(0, 1, 3) != derive_seed(1, 1, 2)
    assert derive_seed(0, "x") == derive_seed(0, "x")
    assert torch.equal(torch.rand(3, generator=step_generator(3, 4)), torch.rand(3, generator=step_generator(3, 4)))
