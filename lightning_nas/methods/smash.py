"""SMASH: One-Shot Model Architecture Search through HyperNetworks (Brock et al., ICLR 2018).

Algorithm 1 of the paper, on any space with a discrete view (``activate(arch)``):

1. *Train the HyperNet.* Every batch draws one random architecture ``c``; a HyperNet ``H`` generates the weights
   of its 1x1 convolutions, ``W = H(c)`` (the other weights are learned freely, as in the paper), and one step of
   ``L_train(N(c, H(c)))`` trains ``H`` and the free weights.
2. *Rank.* Score a set of random architectures by their validation loss with generated weights (the "SMASH score").
3. *Train the best from scratch* (:class:`~lightning_nas.methods.Retrain` for a DARTS genotype; the table for a
   NAS-Bench-201 cell).

The HyperNet and its simplification against the paper's memory-bank encoding are described in
:mod:`lightning_nas.ops.hypernet`. The generated weights enter the space through
:func:`torch.func.functional_call`: the space's own ``nn.Conv2d`` modules run, with their ``weight`` swapped for
the generated tensor, so the ops stay the registry's ops and a found architecture exports as any other.
The generated convolutions' stored weights are frozen (they only seed the HyperNet's initialisation).

The path of step ``t`` comes from ``step_generator(seed, t, "smash")`` and the ranked set from
``step_generator(seed, -1, "rank{k}")``: every DDP rank trains and ranks the same architectures without
communicating, and a resumed run draws what the uninterrupted run would have drawn. The ranking's loss sums are
added up across ranks before anything is sorted, so every rank holds the same ranking.

Settings the paper states (Sec. 4, CIFAR): the SMASH network trains 100 epochs at batch size 50; 250 random
architectures are scored on a held-out validation set of 5,000 training images. The optimizer is the reference
code's (``SMASH.py`` at ajbrock/SMASH bbddaaa): Adam at 1e-3 with betas (0.5, 0.999) and eps 1e-4, weight decay
1e-4 on the freely learned weights and none on the HyperNet, the step size annealed by cosine over every iteration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch.func import functional_call
from typing_extensions import override

from lightning_nas.arch import Arch, Genotype
from lightning_nas.methods._child_cost import scoring_mode
from lightning_nas.methods.base import NASModule
from lightning_nas.ops.hypernet import GenerateScope, HyperNet, generated_convolutions
from lightning_nas.sampling import sample_arch, step_generator
from lightning_nas.spaces.base import DifferentiableSpace, SearchSpace
from lightning_nas.spaces.darts_cell import DartsCellSpace

__all__ = ["SMASH", "RankedArch"]

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class RankedArch:
    """An architecture with its SMASH score: mean validation loss and accuracy under generated weights."""

    arch: Arch
    loss: float
    accuracy: float

    def to_json(self) -> dict[str, Any]:
        return {"arch": dict(self.arch), "loss": self.loss, "accuracy": self.accuracy}


class SMASH(NASModule):
    """Train a HyperNet that generates a sampled child's weights; rank random children by validation loss.

    Every validation run scores the ``num_ranked`` architectures of the ranked set on the whole validation data
    (BatchNorm with each batch's statistics; running statistics untouched) and sorts them by loss; the best is
    :meth:`current_arch` and what ``lightning-nas export`` writes. Under DDP use
    ``strategy="ddp_find_unused_parameters_true"``: the ops off the path get no gradient.

    Args:
        space: a space with a discrete view (``NasBench201Space``, ``DartsCellSpace``, ...).
        generate: which convolutions the HyperNet generates: ``"1x1"`` (the paper) or ``"all"``.
        hidden_size: width of the HyperNet's architecture embedding.
        arch_scale: initial size of the generated weights' architecture-dependent part (see ``HyperNet``).
        lr: Adam learning rate, cosine-annealed to 0 over the run.
        weight_decay: Adam weight decay (L2) of the freely learned weights (the HyperNet has none, as in the paper).
        num_ranked: architectures scored at every validation (250 in the paper).
        seed: seed of the path sequence and of the ranked set.
        channels_last: run the space in channels-last memory format.
        nan_policy: ``"stop"`` (raise, naming the loss and step) or ``"skip"`` (warn; the step changes no weight) on
            a non-finite training loss.

    Example:
        >>> from lightning_nas.spaces import NasBench201Space
        >>> model = SMASH(NasBench201Space(in_channels=1, num_classes=4, channels=4, cells_per_stage=1), num_ranked=3)
        >>> weights = model.generate_weights(model.sample_path(step=0))
        >>> all(w.shape == model.space.get_submodule(n.rsplit(".", 1)[0]).weight.shape for n, w in weights.items())
        True
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        generate: GenerateScope = "1x1",
        hidden_size: int = 32,
        arch_scale: float = 0.5,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        num_ranked: int = 250,
        seed: int = 0,
        channels_last: bool = False,
        nan_policy: Literal["stop", "skip"] = "stop",
    ) -> None:
        super().__init__(space, channels_last=channels_last, nan_policy=nan_policy)
        self.save_hyperparameters(ignore=["space"])
        if num_ranked < 1:
            raise ValueError(f"num_ranked must be >= 1, got {num_ranked}")
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0; got {lr=}, {weight_decay=}")
        convolutions = generated_convolutions(space, generate)
        if not convolutions:
            raise ValueError(f"{type(space).__name__} has no convolution in scope generate={generate!r}; try 'all'")
        for conv in convolutions.values():
            conv.weight.requires_grad_(False)
        self.lr, self.weight_decay, self.seed = lr, weight_decay, seed
        self.choices = space.choices()
        self.hypernet = HyperNet(
            self.choices,
            {f"{name}.weight": conv.weight for name, conv in convolutions.items()},
            hidden=hidden_size,
            arch_scale=arch_scale,
        )
        self.ranked_set: list[Arch] = [
            sample_arch(self.choices, step_generator(seed, -1, f"rank{k}")) for k in range(num_ranked)
        ]
        self.ranking: list[RankedArch] = []
        self.last_path: Arch = self.sample_path(-1)
        self._active: Arch = dict(self.last_path)
        self._totals: Tensor | None = None
        # a differentiable space's alphas are not SMASH weights: DDP must not wait for their gradients
        alpha_ids = {id(p) for p in space.arch_parameters()} if isinstance(space, DifferentiableSpace) else set()
        self._ddp_params_and_buffers_to_ignore = [n for n, p in self.named_parameters() if id(p) in alpha_ids]
        self._alpha_ids = alpha_ids

    # ------------------------------------------------------------------------------------- generated weights
    def sample_path(self, step: int) -> Arch:
        """The architecture of training step ``step``, uniform over the space."""
        return sample_arch(self.choices, step_generator(self.seed, step, "smash"))

    def generate_weights(self, arch: Arch) -> dict[str, Tensor]:
        """``H(c)`` for the encoding ``c`` of ``arch``: the generated weights by the space's parameter names."""
        return self.hypernet(self.hypernet.encode(self.space.validate_arch(arch)))

    def activate(self, arch: Arch) -> None:
        """Run ``arch`` with its generated weights from now on (in :meth:`forward`)."""
        self._active = self.space.validate_arch(arch)
        self.space.activate(self._active)

    @override
    def forward(self, x: Tensor) -> Tensor:
        """Logits of the active architecture, its chosen convolutions running the HyperNet's weights."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return functional_call(self.space, self.generate_weights(self._active), (x,))

    # ------------------------------------------------------------------------------------------------ training
    @override
    def training_step(self, batch: Batch | dict[str, Batch], batch_idx: int) -> Tensor:
        x, y = batch["train"] if isinstance(batch, dict) else batch
        # Phase 1: one random architecture for this batch, the same on every rank.
        self.last_path = self.sample_path(self.global_step)
        self.activate(self.last_path)
        # Phase 2: generate its weights and take one step of the HyperNet and the freely learned weights.
        logits = self(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.skip_unless_finite(loss, "training loss")
        self.train_accuracy(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_accuracy, prog_bar=True)
        return loss

    # ------------------------------------------------------------------------------------------------ ranking
    @torch.no_grad()
    def score(self, arch: Arch, x: Tensor, y: Tensor) -> Tensor:
        """``[loss sum, correct, count]`` of ``arch`` with generated weights on one batch (float64; batch BN)."""
        self.activate(arch)
        with scoring_mode(self.space):
            logits = self(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        correct = (logits.argmax(-1) == y).sum()
        return torch.stack([loss.double(), correct.double(), torch.tensor(float(len(y)), device=loss.device).double()])

    def rank(self, archs: Sequence[Arch], batches: Iterable[Batch]) -> list[RankedArch]:
        """Score ``archs`` on ``batches`` (summed across ranks under DDP) and sort them by validation loss.

        Ties keep the order of ``archs``. The active architecture is restored afterwards.
        """
        previous = dict(self._active)
        totals = torch.zeros(len(archs), 3, dtype=torch.float64, device=self.device)
        for x, y in batches:
            for k, arch in enumerate(archs):
                totals[k] += self.score(arch, x, y)
        self.activate(previous)
        return _sorted(archs, self._sum_across_ranks(totals))

    @override
    def on_validation_epoch_start(self) -> None:
        self._totals = torch.zeros(len(self.ranked_set), 3, dtype=torch.float64, device=self.device)

    @override
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        assert self._totals is not None
        for k, arch in enumerate(self.ranked_set):
            self._totals[k] += self.score(arch, x, y)
        self.activate(self.last_path)

    @override
    def on_validation_epoch_end(self) -> None:
        assert self._totals is not None
        totals, self._totals = self._sum_across_ranks(self._totals), None
        if self.trainer.sanity_checking or float(totals[0, 2]) == 0:
            return
        self.ranking = _sorted(self.ranked_set, totals)
        best = self.ranking[0]
        self.log("val/loss", best.loss, prog_bar=True)
        self.log("val/acc", best.accuracy, prog_bar=True)
        self.log("val/mean_ranked_loss", float((totals[:, 0] / totals[:, 2]).mean()))

    def _sum_across_ranks(self, totals: Tensor) -> Tensor:
        return self.trainer.strategy.reduce(totals, reduce_op="sum") if self._trainer is not None else totals

    # ------------------------------------------------------------------------------------------------ results
    @override
    def current_arch(self) -> Arch:
        """The best-ranked architecture of the last validation; before any, the path trained last."""
        return dict(self.ranking[0].arch) if self.ranking else dict(self.last_path)

    @override
    def export(self) -> Arch | Genotype:
        """A genotype on DARTS cell spaces (what :class:`~lightning_nas.methods.Retrain` trains), else the mapping."""
        arch = self.current_arch()
        return Genotype.from_arch(arch, self.space.steps) if isinstance(self.space, DartsCellSpace) else arch

    @override
    def sampled_archs(self) -> list[Arch]:
        """The architecture the last training step trained."""
        return [dict(self.last_path)]

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["smash"] = {"last_path": dict(self.last_path), "ranking": [r.to_json() for r in self.ranking]}

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("smash", {})
        self.last_path = self.space.validate_arch(state.get("last_path", self.last_path))
        self._active = dict(self.last_path)
        self.ranking = [
            RankedArch(self.space.validate_arch(r["arch"]), float(r["loss"]), float(r["accuracy"]))
            for r in state.get("ranking", [])
        ]

    @override
    def configure_optimizers(self) -> Any:
        hypernet = {id(p) for p in self.hypernet.parameters()}
        weights = [p for p in self.parameters() if p.requires_grad and id(p) not in self._alpha_ids | hypernet]
        groups = [
            {"params": weights, "weight_decay": self.weight_decay},
            {"params": [p for p in self.hypernet.parameters() if p.requires_grad], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.Adam(groups, lr=self.lr, betas=(0.5, 0.999), eps=1e-4)
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        return [optimizer], [{"scheduler": schedule, "interval": "step"}]


def _sorted(archs: Sequence[Arch], totals: Tensor) -> list[RankedArch]:
    """``archs`` with their mean loss and accuracy, sorted by loss (stable: ties keep the given order)."""
    ranked = [
        RankedArch(dict(arch), loss / max(count, 1.0), correct / max(count, 1.0))
        for arch, (loss, correct, count) in zip(archs, totals.tolist())
    ]
    return sorted(ranked, key=lambda r: r.loss if math.isfinite(r.loss) else math.inf)
