"""SPOS: Single Path One-Shot NAS with uniform sampling (Guo et al., ECCV 2020).

Supernet training (Sec. 3.2): every step trains one path drawn uniformly from the space,
``W* = argmin_W E_{a ~ U(A)} L_train(N(a, W(a)))``, optionally uniformly among the paths whose FLOPs lie in a
band (Sec. 3.4, "uniform sampling under constraint"). The path of step ``t`` comes from
``step_generator(seed, t, "spos")``, so every DDP rank trains the same path without communicating and a resumed
run continues the same sequence. The architecture search (Sec. 3.3) runs afterwards over the trained supernet:
``lightning-nas search`` with :class:`~lightning_nas.search.SupernetEvaluator` and an evolution strategy.

Defaults follow the paper's ImageNet supernet recipe (Sec. 4; reference code megvii-model/SinglePathOneShot,
``train.py``): SGD, learning rate 0.5 decayed linearly to 0, momentum 0.9, weight decay 4e-5, label smoothing 0.1.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from typing_extensions import override

from lightning_nas.arch import Arch
from lightning_nas.methods.base import Batches, NASModule
from lightning_nas.sampling import sample_arch, step_generator
from lightning_nas.search.constraints import CostModel
from lightning_nas.spaces.base import DifferentiableSpace, SearchSpace

__all__ = ["SPOS"]

Batch = tuple[Tensor, Tensor]


class SPOS(NASModule):
    """Train a supernet one uniformly sampled path per step (works on every space with ``activate(arch)``).

    Under DDP use ``strategy="ddp_find_unused_parameters_true"``: the ops off the path get no gradient (the same
    ones on every rank, since every rank trains the same path).

    Args:
        space: any search space.
        lr: SGD learning rate, decayed linearly to 0 over the run (0.5 for batch 1024 in the paper).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (4e-5).
        label_smoothing: cross-entropy label smoothing (0.1).
        flops_band: ``(low, high)``: sample uniformly among paths with ``low <= FLOPs <= high`` (rejection).
        image_size: image height and width, used to count FLOPs for ``flops_band``.
        max_band_tries: draws per step before giving up on ``flops_band``.
        seed: seed of the path sequence.
        channels_last: run the supernet in channels-last memory format.
        nan_policy: ``"stop"`` (raise, naming the loss and step) or ``"skip"`` (warn; the step changes no weight) on
            a non-finite training loss.

    Example:
        >>> from lightning_nas.spaces import DartsCellSpace
        >>> model = SPOS(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=1), seed=3)
        >>> model.sample_path(step=7) == model.sample_path(step=7) != model.sample_path(step=8)
        True
    """

    BATCHES: ClassVar[Batches] = "either"

    def __init__(
        self,
        space: SearchSpace,
        *,
        lr: float = 0.5,
        momentum: float = 0.9,
        weight_decay: float = 4e-5,
        label_smoothing: float = 0.1,
        flops_band: tuple[float, float] | None = None,
        image_size: int = 32,
        max_band_tries: int = 100,
        seed: int = 0,
        channels_last: bool = False,
        nan_policy: Literal["stop", "skip"] = "stop",
    ) -> None:
        super().__init__(space, channels_last=channels_last, nan_policy=nan_policy)
        self.save_hyperparameters(ignore=["space"])
        if flops_band is not None and not 0 <= flops_band[0] <= flops_band[1]:
            raise ValueError(f"flops_band must be (low, high) with 0 <= low <= high, got {flops_band}")
        if max_band_tries < 1:
            raise ValueError(f"max_band_tries must be >= 1, got {max_band_tries}")
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.label_smoothing = label_smoothing
        self.flops_band = None if flops_band is None else (float(flops_band[0]), float(flops_band[1]))
        self.max_band_tries, self.seed = max_band_tries, seed
        self.costs = CostModel(space, image_size=image_size)
        self.choices = space.choices()
        self.last_path: Arch = sample_arch(self.choices, step_generator(seed, -1, "spos"))
        # a differentiable space's alphas are not SPOS weights: DDP must not wait for their gradients
        alpha_ids = {id(p) for p in space.arch_parameters()} if isinstance(space, DifferentiableSpace) else set()
        self._ddp_params_and_buffers_to_ignore = [n for n, p in self.named_parameters() if id(p) in alpha_ids]
        self._alpha_ids = alpha_ids

    # ------------------------------------------------------------------------------------------------- sampling
    def sample_path(self, step: int, stream: str = "spos") -> Arch:
        """The path of training step ``step``: uniform over the space, or over the FLOPs band if one is set."""
        generator = step_generator(self.seed, step, stream)
        if self.flops_band is None:
            return sample_arch(self.choices, generator)
        low, high = self.flops_band
        seen = []
        for _ in range(self.max_band_tries):
            arch = sample_arch(self.choices, generator)
            flops = self.costs.flops(arch)
            if low <= flops <= high:
                return arch
            seen.append(flops)
        raise ValueError(
            f"no path with FLOPs in [{low:g}, {high:g}] in {self.max_band_tries} draws (drawn FLOPs ranged "
            f"{min(seen):g} .. {max(seen):g}); widen flops_band"
        )

    @override
    def current_arch(self) -> Arch:
        """The path trained last (SPOS finds its architecture afterwards, with ``lightning-nas search``)."""
        return dict(self.last_path)

    # ------------------------------------------------------------------------------------------------- training
    @override
    def training_step(self, batch: Batch | dict[str, Batch], batch_idx: int) -> Tensor:
        x, y = batch["train"] if isinstance(batch, dict) else batch
        # Phase 1: draw this step's path, the same on every rank.
        self.last_path = self.sample_path(self.global_step)
        self.space.activate(self.last_path)
        # Phase 2: one SGD step of that path's weights.
        logits = self(x)
        loss = torch.nn.functional.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.skip_unless_finite(loss, "training loss")
        self.train_accuracy(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_accuracy, prog_bar=True)
        return loss

    @override
    def validation_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Accuracy of random paths: batch ``i`` of every validation run uses the same path ``i``."""
        self.space.activate(self.sample_path(batch_idx, stream="validation"))
        return self._classification_step(batch, "val")

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.last_path = dict(checkpoint["lightning_nas"]["result"])

    @override
    def configure_optimizers(self) -> Any:
        weights = [p for p in self.space.parameters() if p.requires_grad and id(p) not in self._alpha_ids]
        optimizer = torch.optim.SGD(weights, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))
        return [optimizer], [{"scheduler": schedule, "interval": "step"}]

    # ------------------------------------------------------------------------------------ architecture logging
    @override
    def sampled_archs(self) -> list[Arch]:
        """The path the last training step trained.

        No :meth:`arch_probabilities`: SPOS has no distribution worth plotting. Unconstrained it is uniform, a
        constant that would log the same numbers and the same heatmap every epoch; under ``flops_band`` the
        rejection sampler's distribution has no closed form. The logged ``sampled`` frequencies show the
        distribution actually trained, in both cases.
        """
        return [dict(self.last_path)]
