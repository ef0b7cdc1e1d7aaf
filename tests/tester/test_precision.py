"""Mixed precision: every method trains under bf16-mixed on CPU with finite losses; the DARTS hypergradient
keeps its Hessian-vector product in fp32 and stays within 1e-2 of the fp32 hypergradient."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas.functional.darts import finite_difference_hvp
from lightning_nas.methods import CARS, DARTS
from lightning_nas.methods.base import NASModule, export_payload
from lightning_nas.spaces import DartsCellSpace
from tests.tester.cases import CASES, MethodCase
from tests.tiny import quiet_trainer, tiny_darts_space


class RecordLosses(pl.Callback):
    """The training loss of every batch that stepped the weights (ENAS's controller batches do not)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self._step = 0

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step > self._step:
            self.losses.append(float(trainer.callback_metrics["train/loss"]))
        self._step = trainer.global_step


def _fit(case: MethodCase, root: Path, precision: str) -> tuple[pl.LightningModule, list[float]]:
    pl.seed_everything(0)
    module, record = case.build(), RecordLosses()
    trainer = quiet_trainer(
        root, precision=precision, max_steps=4, num_sanity_val_steps=0, limit_val_batches=1, callbacks=[record]
    )
    trainer.fit(module, datamodule=case.data())
    return module, record.losses


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bf16_mixed_trains_with_finite_losses_to_the_fp32_architecture(case: MethodCase, tmp_path: Path) -> None:
    module, losses = _fit(case, tmp_path / "bf16", "bf16-mixed")
    assert len(losses) == 4
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert all(p.dtype == torch.float32 for p in module.parameters())  # bf16-mixed keeps fp32 master weights
    # on this fixed seed, the search heads for the architecture it finds in fp32
    reference, _ = _fit(case, tmp_path / "fp32", "32-true")
    assert isinstance(module, NASModule)
    assert isinstance(reference, NASModule)
    if isinstance(module, DARTS) and isinstance(reference, DARTS):
        # 4 steps move the alphas about as far as their random init (1e-3): the argmax of an edge is a near-tie that
        # any rounding flips, so compare where the alphas went instead of the genotype. Adam moves an entry by about
        # its lr per step whatever the gradient's size, so the entries fp32 moved by most are those whose gradient
        # kept its sign over all 4 steps; rounding may flip a gradient near zero, never one of those
        pl.seed_everything(0)
        start = _alphas(case.build())
        moved, expected = _alphas(module) - start, _alphas(reference) - start
        steady = expected.abs() > 0.75 * expected.abs().max()
        assert int(steady.sum()) >= 3
        assert torch.equal(torch.sign(moved[steady]), torch.sign(expected[steady]))
        assert float(torch.nn.functional.cosine_similarity(moved, expected, dim=0)) > 0.5
    elif isinstance(module, CARS) and isinstance(reference, CARS):
        # the pool is scored on one batch of 16 images, where many members tie or differ by one image and rounding
        # decides the best; the same pool must get the same scores within one image
        assert [t.arch for t in module.history[-1]] == [t.arch for t in reference.history[-1]]
        for low, full in zip(module.history[-1], reference.history[-1]):
            assert abs(low.metrics["accuracy"] - full.metrics["accuracy"]) <= 1 / 16 + 1e-9
    else:
        assert export_payload(module.export()) == export_payload(reference.export())


def _alphas(module: pl.LightningModule) -> torch.Tensor:
    assert isinstance(module, DARTS)
    return torch.cat([a.detach().flatten() for a in module.space.arch_parameters()])


def _problem() -> tuple[DartsCellSpace, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    space = tiny_darts_space(channels=8)
    gen = torch.Generator().manual_seed(1)
    x_t, x_v = torch.randn(16, 1, 8, 8, generator=gen), torch.randn(16, 1, 8, 8, generator=gen)
    y_t, y_v = torch.randint(0, 4, (16,), generator=gen), torch.randint(0, 4, (16,), generator=gen)
    return space, (x_t, y_t, x_v, y_v)


def _hypergradient(order: str, autocast: bool, arch_fp32: bool = True) -> torch.Tensor:
    space, (x_t, y_t, x_v, y_v) = _problem()
    module = DARTS(space, order=order, unrolled_lr=0.5, arch_fp32=arch_fp32)  # type: ignore[arg-type]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        grads, _ = module.architecture_gradient((x_t, y_t), (x_v, y_v))
    return torch.cat([g.flatten() for g in grads])


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("order", ["first", "second"])
def test_hypergradient_under_bf16_matches_fp32(order: str) -> None:
    fp32 = _hypergradient(order, autocast=False)
    assert _relative(_hypergradient(order, autocast=True), fp32) < 1e-2
    # the same gradient taken under autocast is far off: the reason the default keeps it in fp32
    assert _relative(_hypergradient(order, autocast=True, arch_fp32=False), fp32) > 2e-2


def test_hvp_in_bf16_would_not_match() -> None:
    """Why the HVP is forced to fp32: the same central difference taken in bf16 loses the signal."""
    space, (x_t, y_t, _, _) = _problem()
    weights = list(space.weight_parameters())
    alphas = space.arch_parameters()
    vector = [torch.randn_like(w) for w in weights]

    def loss() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(space(x_t), y_t)

    fp32 = torch.cat([h.flatten() for h in finite_difference_hvp(loss, weights, alphas, vector)])
    # the central difference by hand, with both gradients taken under bf16 autocast
    norm = torch.cat([v.flatten() for v in vector]).norm()
    eps = 0.01 / norm.item()
    grads = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for w, v in zip(weights, vector):
                w.add_(v, alpha=sign * eps)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            grads.append(torch.autograd.grad(loss(), alphas))
        with torch.no_grad():
            for w, v in zip(weights, vector):
                w.add_(v, alpha=-sign * eps)
    bf16 = torch.cat([((p - m) / (2 * eps)).flatten() for p, m in zip(*grads)])
    assert (bf16 - fp32).norm() / fp32.norm() > 0.1
