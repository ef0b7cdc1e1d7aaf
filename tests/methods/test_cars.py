"""CARS (Yang et al., 2020): protection escapes the small-model trap (closed form and a real run); state survives a
checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas.data import DigitsDataModule, SyntheticDataModule
from lightning_nas.methods import CARS
from lightning_nas.methods.cars import OBJECTIVES, PROTECT, PROTECTIONS
from lightning_nas.search import Trial, select_survivors
from tests.tiny import quiet_trainer, tiny_darts_space


def learning_curve(size: float, epoch: int) -> float:
    """The paper's Fig. 1 in closed form: from chance (0.25), bigger models reach more but learn more slowly."""
    return 0.25 + (0.35 + 0.35 * size) * (1.0 - math.exp(-epoch / (0.3 + 4.0 * size)))


@pytest.mark.parametrize("seed", range(3))
def test_protection_keeps_a_wider_spread_of_model_sizes_than_plain_nsga2(seed: int) -> None:
    """On the same run (the same scored pools), pNSGA-III keeps a wider range of model sizes than NSGA-II.

    Accuracies follow closed-form learning curves of each architecture's real parameter count, so that small
    models lead early and large ones later: the small-model trap of Yang et al. (2020), Sec. 3.3.
    """
    model = CARS(tiny_darts_space(layers=2), population_size=10, image_size=8, seed=seed)
    sizes = [model.costs.params(a) for a in model.pool]
    smallest, largest = min(sizes) * 0.5, max(sizes) * 1.5  # sizes normalised to about [0, 1]
    spreads = []
    for epoch in range(1, 7):
        model.evolve(
            [learning_curve((model.costs.params(a) - smallest) / (largest - smallest), epoch) for a in model.pool]
        )
        pool = model.history[-1]
        kept = {
            name: [t.metrics["params"] for t in select_survivors(pool, 10, OBJECTIVES, protect)]
            for name, protect in (("pNSGA-III", PROTECT), ("NSGA-II", None))
        }
        spreads.append({name: max(sizes) - min(sizes) for name, sizes in kept.items()})
    print("params spread of the kept population per generation:", spreads)
    assert all(s["pNSGA-III"] >= s["NSGA-II"] for s in spreads)
    assert sum(s["pNSGA-III"] for s in spreads) > sum(s["NSGA-II"] for s in spreads)


def kept_size_spreads(protect: str, root: Path) -> list[float]:
    """One real CARS run on the digits: the params spread (largest minus smallest) of the population it keeps
    at each generation."""
    pl.seed_everything(0)
    data = DigitsDataModule(search=True, batch_size=64, augment=False)
    space = tiny_darts_space(num_classes=10, channels=8)
    model = CARS(space, population_size=8, image_size=8, seed=0, protect=protect)  # type: ignore[arg-type]
    quiet_trainer(root, max_epochs=8, num_sanity_val_steps=0).fit(model, datamodule=data)
    kept = [select_survivors(pool, 8, OBJECTIVES, PROTECTIONS[protect]) for pool in model.history]
    assert [t.arch for t in kept[-1]] == model.population  # the selection replayed from the history is the run's
    return [max(t.metrics["params"] for t in k) - min(t.metrics["params"] for t in k) for k in kept]


def test_a_real_run_escapes_the_small_model_trap_that_plain_nsga2_falls_into(tmp_path: Path) -> None:
    """The paper's small-model trap on small real data (the 8x8 digits), two runs from the same seed and data.

    Small cells learn fastest, so plain NSGA-II selection on (accuracy, params) drops the large models
    generation by generation and its population shrinks to nearly one size. CARS with protection keeps the
    most accurate large models too, and with them a wide range of sizes.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 8x8 images: a second thread costs more than it saves (3x slower here)
    try:
        protected, plain = kept_size_spreads("size", tmp_path / "size"), kept_size_spreads("none", tmp_path / "none")
    finally:
        torch.set_num_threads(threads)
    print(f"params spread of the kept population per generation: CARS {protected}, NSGA-II {plain}")
    assert plain[-1] < 0.5 * plain[0]  # the trap: NSGA-II's range of sizes collapses
    assert all(p >= n for p, n in zip(protected, plain))
    assert protected[-1] > 2 * plain[-1]


def test_cars_run_writes_a_valid_front_and_its_state_survives_a_checkpoint(tmp_path: Path) -> None:
    pl.seed_everything(0)
    data = SyntheticDataModule(num_samples=192, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=32)
    model = CARS(tiny_darts_space(layers=2), population_size=4, image_size=8, seed=1)
    trainer = quiet_trainer(tmp_path, max_epochs=2, num_sanity_val_steps=0, enable_checkpointing=True)
    trainer.fit(model, datamodule=data)
    assert len(model.history) == 2
    assert len(model.population) == 4
    assert len(model.pool) == 8
    for arch in model.pool:
        assert model.space.validate_arch(arch) == arch
    front = json.loads((tmp_path / "pareto_front.json").read_text())
    assert [t["arch"] for t in front] == [
        t.arch for t in sorted(model.pareto_front(), key=lambda t: t.metrics["params"])
    ]
    for entry in front:
        assert entry["metrics"]["params"] == model.costs.params(entry["arch"])

    checkpoint = torch.load(
        trainer.checkpoint_callback.last_model_path or next(tmp_path.rglob("*.ckpt")), weights_only=False
    )
    restored = CARS(tiny_darts_space(layers=2), population_size=4, image_size=8, seed=1)
    restored.on_load_checkpoint(checkpoint)
    assert restored.search_state() == model.search_state()
    assert restored.current_arch() == model.current_arch()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="population_size >= 2"):
        CARS(tiny_darts_space(layers=2), population_size=1)
    with pytest.raises(ValueError, match=r"one accuracy per pool member \(3\), got 2"):
        CARS(tiny_darts_space(layers=2), population_size=3).evolve([0.5, 0.5])
    with pytest.raises(ValueError, match=r"protect must be one of \['gain', 'none', 'size'\], got True"):
        CARS(tiny_darts_space(layers=2), protect=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score_statistics must be 'batch' or 'running', got 'eval'"):
        CARS(tiny_darts_space(layers=2), score_statistics="eval")  # type: ignore[arg-type]


def test_size_protection_keeps_the_largest_model_that_nsga2_drops() -> None:
    """Accuracy falling with size (the trap): NSGA-II keeps the small end, size protection the large end too."""
    trials = [Trial({"x": i}, {"accuracy": 0.9 - 0.1 * i, "params": float(10**i)}) for i in range(5)]
    kept = {
        name: sorted(int(t.metrics["params"]) for t in select_survivors(trials, 3, OBJECTIVES, PROTECTIONS[name]))
        for name in ("none", "size")
    }
    assert kept == {"none": [1, 10, 100], "size": [1, 10, 10000]}
