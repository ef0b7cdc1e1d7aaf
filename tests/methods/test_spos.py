"""SPOS (Guo et al., 2020) on a tiny DARTS cell space: uniform paths, FLOPs band, and a real search on Fashion-MNIST."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_nas.arch import validate_arch
from lightning_nas.data import FashionMNISTDataModule
from lightning_nas.methods import SPOS
from lightning_nas.sampling import sample_arch
from lightning_nas.search import (
    RandomSearch,
    RegularizedEvolution,
    SupernetEvaluator,
    collect_batches,
    count_cost,
    run_search,
)
from lightning_nas.spaces import DartsCellSpace
from tests.tiny import quiet_trainer, tiny_darts_space


def tiny_space(**kwargs: int) -> DartsCellSpace:
    return tiny_darts_space(**{"num_classes": 10, "layers": 2, **kwargs})


def test_paths_are_uniform_seeded_and_valid() -> None:
    model = SPOS(tiny_space(), seed=5)
    paths = [model.sample_path(step) for step in range(400)]
    assert all(validate_arch(p, model.choices) == p for p in paths)
    again = SPOS(tiny_space(), seed=5)
    assert paths == [again.sample_path(step) for step in range(400)]
    # uniform: each op of a 7-way choice appears ~400/7 ~ 57 times (chi-square with 6 dof, 99.9% quantile 22.5)
    name = model.choices[0].name
    counts = [sum(p[name] == op for p in paths) for op in model.choices[0].candidates]
    expected = len(paths) / len(counts)
    assert sum((c - expected) ** 2 / expected for c in counts) < 22.5


def test_flops_band_is_respected_and_an_impossible_band_names_the_range() -> None:
    space = tiny_space()
    generator = torch.Generator().manual_seed(0)
    drawn = [count_cost(space, sample_arch(space.choices(), generator), image_size=8).flops for _ in range(60)]
    low, high = statistics.quantiles(drawn, n=4)[0], statistics.quantiles(drawn, n=4)[2]
    model = SPOS(space, flops_band=(low, high), image_size=8)
    for step in range(30):
        assert low <= count_cost(space, model.sample_path(step), image_size=8).flops <= high
    impossible = SPOS(tiny_space(), flops_band=(1.0, 2.0), image_size=8, max_band_tries=5)
    with pytest.raises(
        ValueError, match=r"no path with FLOPs in \[1, 2\] in 5 draws \(drawn FLOPs ranged \d+ \.\. \d+\)"
    ):
        impossible.sample_path(0)
    with pytest.raises(ValueError, match="flops_band must be"):
        SPOS(tiny_space(), flops_band=(5.0, 1.0))


def test_spos_and_evolution_beat_the_mean_random_arch_on_fashion_mnist(data_root: Path, tmp_path: Path) -> None:
    """Train a tiny supernet on 2000 real images (3 epochs), search with regularized evolution on a held
    validation half, and score the found arch and random archs on images neither training nor search saw
    (the official test split)."""
    start = time.perf_counter()
    pl.seed_everything(0)
    data = FashionMNISTDataModule(root=data_root, search=True, subset=4000, batch_size=64, augment=False)
    space = tiny_space(channels=8)
    model = SPOS(space, lr=0.1, label_smoothing=0.0, image_size=28)
    trainer = quiet_trainer(tmp_path, max_epochs=3, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    trained = time.perf_counter()

    data.setup("test")
    # each path's BN statistics re-estimated on training images, as SPOS does (Sec. 3.3)
    calibration = [x for x, _ in collect_batches(DataLoader(data.train_dataset, batch_size=64), data, 2)]
    search_set = SupernetEvaluator(
        space, collect_batches(data.val_dataloader(), data, 6), calibration_batches=calibration
    )
    held_out = SupernetEvaluator(
        space, collect_batches(data.test_dataloader(), data, 8), calibration_batches=calibration
    )

    best = run_search(RegularizedEvolution(space.choices(), population_size=10, sample_size=3, seed=0), search_set, 40)
    random_search = RandomSearch(space.choices(), seed=1)
    randoms = [random_search.ask() for _ in range(20)]
    found = held_out(best.arch)["accuracy"]
    random_accuracies = [held_out(arch)["accuracy"] for arch in randoms]
    mean_random = statistics.mean(random_accuracies)
    print(
        f"held-out accuracy: found {found:.3f}, random mean {mean_random:.3f} (min {min(random_accuracies):.3f}, "
        f"max {max(random_accuracies):.3f}); train {trained - start:.1f}s, search {time.perf_counter() - trained:.1f}s"
    )
    assert found > mean_random
