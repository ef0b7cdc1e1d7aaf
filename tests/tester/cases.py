"""The methods every shared correctness test runs on: one tiny space and tiny data per case.

Add a new method here as a :class:`MethodCase` (append to the flat ``CASES`` list); every test in
``tests/tester`` then covers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl

from lightning_nas.methods import (
    CARS,
    DARTS,
    ENAS,
    GDAS,
    PCDARTS,
    SMASH,
    SPOS,
    BigNAS,
    DARTSMinus,
    DrNAS,
    OnceForAll,
)
from lightning_nas.ops import ENAS_MICRO_OPS
from lightning_nas.spaces import ElasticMobileNetV3
from tests.tiny import bilevel_data, plain_data, tiny_darts_space, tiny_elastic_space, tiny_nb201_space


@dataclass(frozen=True)
class MethodCase:
    """A method on a tiny space with tiny data.

    Args:
        name: test id.
        build: returns a fresh module (same seed → same initial weights).
        data: returns a fresh datamodule; every training epoch is 3 batches on one process.
        search_state: the method's search state beyond its weights (e.g. population, phase), for equality checks.
    """

    name: str
    build: Callable[[], pl.LightningModule]
    data: Callable[[], pl.LightningDataModule]
    search_state: Callable[[pl.LightningModule], Any] = lambda module: None


def tiny_enas() -> ENAS:
    space = tiny_darts_space(ops=ENAS_MICRO_OPS)
    # two weight steps, then one controller step of two children: the 3-batch epochs mix both phases
    return ENAS(
        space,
        weight_steps=2,
        controller_steps=1,
        controller_samples=2,
        derive_samples=2,
        hidden_size=16,
        controller_lr=0.05,
    )


def enas_state(module: pl.LightningModule) -> Any:
    assert isinstance(module, ENAS)
    return {
        "policy": dict(module.policy.state_dict()),
        "baseline": module.baseline,
        "search_step": module.search_step,
        "derived": (module.derived_arch, module.derived_score),
    }


def spos_state(module: pl.LightningModule) -> Any:
    assert isinstance(module, SPOS)
    return dict(module.last_path)


def smash_state(module: pl.LightningModule) -> Any:
    assert isinstance(module, SMASH)
    return {"last_path": dict(module.last_path), "ranking": [r.to_json() for r in module.ranking]}


def cars_state(module: pl.LightningModule) -> Any:
    assert isinstance(module, CARS)
    return module.search_state()


def tiny_ofa() -> OnceForAll:
    space = tiny_elastic_space()
    # epoch 0: full network; epoch 1: depth-1 (teacher taken, two subnets per step), where the resume tests stop;
    # epoch 2 walks through depth-2 and expand-1 (channel sorting) into expand-2
    return OnceForAll(
        space,
        phase_epochs=[1, 0, 1, 0, 0, 1],
        phase_lrs=[0.05] * 6,
        phase_warmup_epochs=[0] * 6,
        subnets_per_step=[1, 1, 2, 2, 2, 2],
        calibration_images=0,
    )


def ofa_state(module: pl.LightningModule) -> Any:
    assert isinstance(module, OnceForAll)
    return {"phase_index": module.phase_index, "phase": module.phase.name}


def tiny_bignas() -> BigNAS:
    space = ElasticMobileNetV3(
        in_channels=1, num_classes=4, preset="cifar", widths=(8, 8, 8, 8, 8, 8, 8, 16, 16), resolutions=(8, 12)
    )
    return BigNAS(space, num_random_subnets=1, warmup_epochs=1, calibration_images=16, calibration_batch_size=16)


CASES = [
    # first order in NAS-Bench-201's step order (the weights first), so the tester runs both orders
    MethodCase("darts-first", lambda: DARTS(tiny_darts_space(), order="first", weights_first=True), bilevel_data),
    MethodCase("darts-second", lambda: DARTS(tiny_darts_space(), order="second"), bilevel_data),
    MethodCase("darts-nb201", lambda: DARTS(tiny_nb201_space(), order="second"), bilevel_data),
    MethodCase("enas", tiny_enas, bilevel_data, enas_state),
    MethodCase("spos", lambda: SPOS(tiny_darts_space(), lr=0.05, image_size=8), bilevel_data, spos_state),
    MethodCase("spos-nb201", lambda: SPOS(tiny_nb201_space(), lr=0.05, image_size=8), plain_data, spos_state),
    MethodCase("smash-nb201", lambda: SMASH(tiny_nb201_space(), num_ranked=4, lr=0.01), plain_data, smash_state),
    MethodCase("cars", lambda: CARS(tiny_darts_space(), population_size=4, image_size=8), bilevel_data, cars_state),
    MethodCase("ofa", tiny_ofa, plain_data, ofa_state),
    MethodCase("bignas", tiny_bignas, plain_data, lambda module: module.sampled_archs()),
    # the robust DARTS siblings: GDAS (one path per edge, cheap) on the DARTS cell, the others on NAS-Bench-201,
    # DARTS- on both (the DARTS cell's stride-2 edges give its auxiliary skip a reduction of its own)
    MethodCase("gdas", lambda: GDAS(tiny_darts_space(), seed=1), bilevel_data),
    MethodCase("pc-darts-nb201", lambda: PCDARTS(tiny_nb201_space(), partial_channels=2), bilevel_data),
    MethodCase("drnas-nb201", lambda: DrNAS(tiny_nb201_space(), seed=1), bilevel_data),
    MethodCase("darts-minus-nb201", lambda: DARTSMinus(tiny_nb201_space()), bilevel_data),
    MethodCase("darts-minus", lambda: DARTSMinus(tiny_darts_space()), bilevel_data),
]
