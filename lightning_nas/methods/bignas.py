"""BigNAS: single-stage training of an elastic supernet with the sandwich rule (Yu et al., ECCV 2020).

Every training step (Sec. 3.1, "sandwich rule" and "inplace distillation")::

    1. the largest subnet: L = CE_smooth(f_max(x), y), with dropout on (regularisation on the largest only)
    2. the smallest subnet and N random subnets: L = CE(f_s(x), softmax(stop_grad(f_max(x))))
    3. one optimizer step on the sum of all their gradients

Under DDP the first subnets' backward passes run inside ``no_sync`` and only the last one all-reduces, so the
gradients are synchronised once per step. The paper's training details (Sec. 3.2) are options: an
exponentially decaying learning rate that stays constant at a floor (5% of the initial one), no weight decay on
batch-norm and bias parameters, zero-initialised last BN gamma of each residual block, and BN recalibration before
every subnet is evaluated. Subnets are drawn from ``step_generator(seed, step, k)``, so every rank trains the
same subnets and a resumed run draws exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.func import functional_call
from typing_extensions import override

from lightning_nas.arch import Arch
from lightning_nas.callbacks.bn_recalibration import RecalibrateBatchNorm
from lightning_nas.data.augment import random_crop, random_flip
from lightning_nas.functional import soft_target_cross_entropy
from lightning_nas.methods.base import CHECKPOINT_KEY, Batches, NASModule, SubnetResult, weight_decay_groups
from lightning_nas.ops.elastic import ElasticInvertedResidual
from lightning_nas.sampling import derive_seed, seeded_random_ops, step_generator
from lightning_nas.spaces.elastic import ElasticSpace

__all__ = ["BigNAS", "exponential_decay_with_floor", "weight_decay_groups", "zero_init_residual_blocks"]

Batch = tuple[Tensor, Tensor]
Role = Literal["max", "min", "random"]


def exponential_decay_with_floor(
    step: float, *, base_lr: float, decay_rate: float, decay_steps: float, floor: float, warmup_steps: float = 0.0
) -> float:
    """``base_lr * decay_rate ** ((step - warmup) / decay_steps)``, never below ``floor * base_lr``.

    During the first ``warmup_steps`` the rate rises linearly from 0 to ``base_lr`` (BigNAS Sec. 3.2: exponential
    decay "with a constant ending learning rate" of 5% of the initial one).

    Example:
        >>> lr = lambda s: exponential_decay_with_floor(s, base_lr=1.0, decay_rate=0.5, decay_steps=10, floor=0.2)
        >>> lr(0), lr(10), lr(20), lr(1000)
        (1.0, 0.5, 0.25, 0.2)
    """
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    return base_lr * max(decay_rate ** ((step - warmup_steps) / decay_steps), floor)


@torch.no_grad()
def zero_init_residual_blocks(space: nn.Module) -> int:
    """Set the last BN gamma of every residual block to 0, so that each starts as the identity; the count set."""
    count = 0
    for module in space.modules():
        if isinstance(module, ElasticInvertedResidual) and module.residual:
            module.project_bn.weight.zero_()
            count += 1
    return count


@contextmanager
def _dropout_disabled(module: nn.Module) -> Iterator[None]:
    """Every ``nn.Dropout`` of ``module`` at rate 0 inside the block (regularisation on the largest subnet only)."""
    dropouts = [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    rates = [m.p for m in dropouts]
    for m in dropouts:
        m.p = 0.0
    try:
        yield
    finally:
        for m, rate in zip(dropouts, rates):
            m.p = rate


class BigNAS(NASModule):
    """Sandwich-rule training with inplace distillation of an elastic supernet, in one stage.

    Defaults follow the paper (Sec. 3.2) where it gives them: label smoothing 0.1 and dropout on the largest subnet
    only, two random subnets per step, learning rate decaying by 0.97 every 2.4 epochs down to a floor of 5% of
    the initial one, no weight decay on BN and biases (``weight_decay`` 1e-5 on the rest), zero-initialised last BN
    gamma of residual blocks. The optimizer is SGD with Nesterov momentum 0.9. The datamodule's augmentation (if
    any) applies to every subnet's batch. With ``augment_largest`` the largest subnet alone trains on a randomly
    cropped and flipped copy of the batch (turn the datamodule's augmentation off then, ``--data.augment=false``);
    its soft predictions for the students come from an extra forward pass without gradients on the batch the
    students see, so teacher and students describe the same images.

    Under DDP use ``--trainer.strategy=ddp_find_unused_parameters_true`` (subnets skip blocks) and not
    ``sync_batchnorm``.

    Args:
        space: an elastic space.
        num_random_subnets: ``N``, random subnets per step besides the largest and the smallest (2).
        teacher: ``"largest"`` trains the largest subnet first in every step (the sandwich rule's top, the teacher
            of inplace distillation); ``"none"`` trains only the smallest and the random subnets.
        distill: student subnets learn the largest subnet's detached soft predictions (needs ``teacher="largest"``);
            ``False`` trains them on the labels.
        label_smoothing: label smoothing of the largest subnet's cross entropy.
        lr: initial (peak) learning rate.
        decay_rate: learning-rate factor per ``decay_epochs``.
        decay_epochs: epochs per ``decay_rate`` factor (continuous decay).
        lr_floor: the learning rate stays at ``lr_floor * lr`` once it decays below it.
        warmup_epochs: epochs of linear warm-up from 0.
        momentum: SGD (Nesterov) momentum.
        weight_decay: weight decay of weights (none on batch-norm parameters and biases).
        zero_init_residual: zero the last BN gamma of every residual block at construction.
        seed: seed of subnet sampling and (with the rank) of the largest subnet's dropout masks.
        calibration_images: training images for BN recalibration before validation (0: no recalibration).
        calibration_batch_size: images per recalibration batch.
        channels_last: run in channels-last memory format.
        nan_policy: ``"stop"`` or ``"skip"`` a step whose loss is not finite.
        augment_largest: augment the largest subnet's batch only (random crop with ``largest_crop_padding`` zero
            padding and random horizontal flips with probability ``largest_flip``), seeded by rank and step.
        largest_crop_padding: padding of the largest subnet's random crop (0: no crop).
        largest_flip: probability of the largest subnet's horizontal flip (0: no flip).

    Example:
        >>> from lightning_nas.spaces import ElasticMobileNetV3
        >>> model = BigNAS(ElasticMobileNetV3(preset="cifar", num_classes=10), num_random_subnets=1)
        >>> [role for role, _ in model.sandwich_subnets(0)]
        ['max', 'min', 'random']
    """

    BATCHES: ClassVar[Batches] = "plain"

    space: ElasticSpace

    def __init__(
        self,
        space: ElasticSpace,
        *,
        num_random_subnets: int = 2,
        teacher: Literal["largest", "none"] = "largest",
        distill: bool = True,
        label_smoothing: float = 0.1,
        lr: float = 0.1,
        decay_rate: float = 0.97,
        decay_epochs: float = 2.4,
        lr_floor: float = 0.05,
        warmup_epochs: float = 5.0,
        momentum: float = 0.9,
        weight_decay: float = 1e-5,
        zero_init_residual: bool = True,
        seed: int = 0,
        calibration_images: int = 2000,
        calibration_batch_size: int = 200,
        channels_last: bool = False,
        nan_policy: Literal["stop", "skip"] = "stop",
        augment_largest: bool = False,
        largest_crop_padding: int = 4,
        largest_flip: float = 0.5,
    ) -> None:
        if not isinstance(space, ElasticSpace):
            raise TypeError(f"BigNAS needs an ElasticSpace, got {type(space).__name__}")
        _check_arguments(num_random_subnets, teacher, distill, decay_rate, decay_epochs, lr_floor, warmup_epochs)
        super().__init__(space, channels_last=channels_last, nan_policy=nan_policy)
        self.save_hyperparameters(ignore=["space"])
        self.automatic_optimization = False
        self.num_random_subnets, self.teacher, self.distill = num_random_subnets, teacher, distill
        self.label_smoothing, self.lr, self.momentum, self.weight_decay = label_smoothing, lr, momentum, weight_decay
        self.decay_rate, self.decay_epochs, self.lr_floor = decay_rate, decay_epochs, lr_floor
        self.warmup_epochs, self.seed = warmup_epochs, seed
        self.calibration_images, self.calibration_batch_size = calibration_images, calibration_batch_size
        if largest_crop_padding < 0 or not 0.0 <= largest_flip <= 1.0:
            raise ValueError(
                f"need largest_crop_padding >= 0 and 0 <= largest_flip <= 1, got {largest_crop_padding=}, "
                f"{largest_flip=}"
            )
        self.augment_largest, self.largest_crop_padding = augment_largest, largest_crop_padding
        self.largest_flip = largest_flip
        self.last_subnets: list[Arch] = []
        self.subnet_statistics: dict[str, dict[str, Tensor]] = {}
        self.results: list[SubnetResult] = []
        self._tallies: dict[str, Tensor] = {}
        if zero_init_residual:
            zero_init_residual_blocks(space)

    # ----------------------------------------------------------------------------------------------- training
    def sandwich_subnets(self, step: int) -> list[tuple[Role, Arch]]:
        """The subnets step ``step`` trains, in order: largest (unless ``teacher="none"``), smallest, N random."""
        subnets: list[tuple[Role, Arch]] = []
        if self.teacher == "largest":
            subnets.append(("max", self.space.sample_max_subnet()))
        subnets.append(("min", self.space.sample_min_subnet()))
        for k in range(self.num_random_subnets):
            subnets.append(("random", self.space.sample_subnet(step_generator(self.seed, step, k))))
        return subnets

    @override
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, y = batch
        optimizer = self.optimizers()
        lr = self._set_learning_rate()
        optimizer.zero_grad()  # type: ignore[union-attr]
        # 1-2. the sandwich: largest, smallest and N random subnets, gradients accumulated, synchronised once
        subnets = self.sandwich_subnets(self.global_step)
        self.last_subnets = [arch for _, arch in subnets]
        losses = self.sandwich_backward(x, y, subnets, self.global_step)
        # 3. one optimizer step on the summed gradients (all ranks skip together if a loss is not finite)
        if self.check_finite(losses, "training loss"):
            optimizer.step()  # type: ignore[union-attr]
        loss = losses.mean()
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", lr)
        return loss

    def sandwich_backward(self, x: Tensor, y: Tensor, subnets: list[tuple[Role, Arch]], step: int) -> Tensor:
        """Forward and backward every subnet in order, the largest's soft predictions teaching the others.

        Gradients accumulate in ``.grad``; all backward passes but the last run without DDP synchronisation (DDP
        marks a parameter used inside ``no_sync`` as used, so the last pass all-reduces every accumulated gradient,
        including those of blocks only the earlier subnets ran). Returns the detached losses, one per subnet.
        """
        teacher_logits: Tensor | None = None
        losses = []
        for k, (role, arch) in enumerate(subnets):
            last = k == len(subnets) - 1
            with nullcontext() if last else self._no_backward_sync():
                inputs = self.augment_for_largest(x, step) if role == "max" and self.augment_largest else x
                loss, logits = self.subnet_loss(inputs, y, arch, role, teacher_logits, step)
                self._backward(loss)
            if role == "max":
                teacher_logits = logits.detach() if inputs is x else self.teacher_predictions(x, arch)
            losses.append(loss.detach())
        return torch.stack(losses)

    def augment_for_largest(self, x: Tensor, step: int) -> Tensor:
        """The largest subnet's own view of the batch: random crop and flip, seeded by (seed, rank, step)."""
        seed = derive_seed(self.seed, "largest_augment", self.global_rank, step)
        generator = torch.Generator(device=x.device).manual_seed(seed)
        x = random_crop(x, self.largest_crop_padding, generator)
        return random_flip(x, self.largest_flip, generator) if self.largest_flip > 0 else x

    @torch.no_grad()
    def teacher_predictions(self, x: Tensor, arch: Arch) -> Tensor:
        """The largest subnet's logits on the students' (unaugmented) batch, without dropout: their soft targets."""
        self.space.activate(arch)
        with _dropout_disabled(self.space):
            return self(x).detach()

    def subnet_loss(
        self, x: Tensor, y: Tensor, arch: Arch, role: Role, teacher_logits: Tensor | None, step: int
    ) -> tuple[Tensor, Tensor]:
        """Loss and logits of one subnet: smoothed CE for the largest (with dropout), distillation for the others.

        Raises:
            ValueError: a student asked to distill without the largest subnet's logits.
        """
        self.space.activate(arch)
        if role == "max":
            dropout_seed = derive_seed(self.seed, "dropout", self.global_rank, step, 0)
            with seeded_random_ops(dropout_seed, x.device):  # resumable dropout masks (OFA's convention)
                logits = self(x)
            return nn.functional.cross_entropy(logits, y, label_smoothing=self.label_smoothing), logits
        with _dropout_disabled(self.space):
            logits = self(x)
        return self.student_loss(logits, y, teacher_logits), logits

    def student_loss(self, logits: Tensor, targets: Tensor, teacher_logits: Tensor | None) -> Tensor:
        """``CE(logits, softmax(teacher))`` (inplace distillation), or ``CE(logits, y)`` with ``distill=False``."""
        if not self.distill:
            return nn.functional.cross_entropy(logits, targets)
        if teacher_logits is None:
            raise ValueError("distill=True needs the largest subnet's logits; train it first (teacher='largest')")
        return soft_target_cross_entropy(logits, teacher_logits)

    def _backward(self, loss: Tensor) -> None:
        """``manual_backward`` under a Trainer; plain ``backward`` when the module runs on its own (benchmarks)."""
        if self._trainer is None:
            loss.backward()
        else:
            self.manual_backward(loss)

    @contextmanager
    def _no_backward_sync(self) -> Iterator[None]:
        if self._trainer is None:
            yield
            return
        strategy = self.trainer.strategy
        if isinstance(strategy, pl.strategies.ParallelStrategy):
            with strategy.block_backward_sync():
                yield
        else:
            yield

    def _set_learning_rate(self) -> float:
        batches = self.trainer.num_training_batches
        per_epoch = batches if math.isfinite(batches) and batches > 0 else 1
        lr = exponential_decay_with_floor(
            self.global_step,
            base_lr=self.lr,
            decay_rate=self.decay_rate,
            decay_steps=self.decay_epochs * per_epoch,
            floor=self.lr_floor,
            warmup_steps=self.warmup_epochs * per_epoch,
        )
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        return lr

    # --------------------------------------------------------------------------------------------- evaluation
    def evaluation_subnets(self) -> dict[str, Arch]:
        """The largest, the smallest and a fixed middle subnet.

        The middle subnet takes every choice's middle candidate; with an even count, choices alternate between the
        two middle ones (so that with two candidates per choice it is neither the largest nor the smallest).
        """
        middle = {}
        for index, choice in enumerate(self.space.choices()):
            ordered = sorted(choice.candidates)
            count = len(ordered)
            middle[choice.name] = ordered[count // 2 if count % 2 else count // 2 - 1 + index % 2]
        return {"max": self.space.sample_max_subnet(), "min": self.space.sample_min_subnet(), "middle": middle}

    def set_subnet_statistics(self, statistics: dict[str, dict[str, Tensor]]) -> None:
        """BN statistics per evaluated subnet, from :class:`~lightning_nas.callbacks.RecalibrateBatchNorm`."""
        self.subnet_statistics = statistics

    @override
    def on_validation_epoch_start(self) -> None:
        self._tallies = {}

    @override
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    @override
    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    @override
    def on_validation_epoch_end(self) -> None:
        subnets = self.evaluation_subnets()
        self.results = []
        for name, tally in self._tallies.items():
            correct, count = self.trainer.strategy.reduce(tally, reduce_op="sum").tolist()
            arch = subnets[name]
            metrics = {"val/acc": correct / max(count, 1.0)}
            metrics.update(params=float(self.space.count_params(arch)), flops=float(self.space.count_flops(arch)))
            self.results.append((arch, metrics))

    def _evaluate(self, batch: Batch, stage: str) -> None:
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        active = self.space.active_arch()
        for name, arch in self.evaluation_subnets().items():
            self.space.activate(arch)
            logits = functional_call(self.space, self.subnet_statistics.get(name, {}), (x,))
            loss = nn.functional.cross_entropy(logits, y)
            correct = (logits.argmax(1) == y).sum()
            tally = torch.stack([correct.float(), torch.tensor(float(len(y)), device=x.device)])
            if stage == "val":
                self._tallies[name] = self._tallies.get(name, torch.zeros_like(tally)) + tally
            self.log(f"{stage}/{name}/loss", loss, sync_dist=True, batch_size=len(y))
            self.log(f"{stage}/{name}/acc", correct / len(y), prog_bar=True, sync_dist=True, batch_size=len(y))
        self.space.activate(active)

    # ------------------------------------------------------------------------------------ result and plumbing
    @override
    def current_arch(self) -> Arch:
        """The largest subnet (every subnet is trained; pick one with ``lightning-nas search``)."""
        return self.space.sample_max_subnet()

    @override
    def sampled_archs(self) -> list[Arch]:
        """The subnets the last training step trained, in sandwich order."""
        return list(self.last_subnets)

    @override
    def subnet_results(self) -> list[SubnetResult]:
        """Largest, smallest and middle subnet with ``val/acc``, ``params`` and ``flops`` from the last validation."""
        return list(self.results)

    @override
    def configure_optimizers(self) -> Any:
        groups = weight_decay_groups(self.space, self.weight_decay)
        return torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum, nesterov=True)

    @override
    def configure_callbacks(self) -> list[pl.Callback]:
        if self.calibration_images <= 0:
            return []
        return [RecalibrateBatchNorm(self.calibration_images, self.calibration_batch_size)]

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY].update(self.space.checkpoint_entry())


def _check_arguments(
    num_random_subnets: int,
    teacher: str,
    distill: bool,
    decay_rate: float,
    decay_epochs: float,
    lr_floor: float,
    warmup_epochs: float,
) -> None:
    if isinstance(num_random_subnets, bool) or not isinstance(num_random_subnets, int) or num_random_subnets < 0:
        raise ValueError(f"num_random_subnets must be an integer >= 0, got {num_random_subnets!r}")
    if teacher not in ("largest", "none"):
        raise ValueError(f"teacher must be 'largest' or 'none', got {teacher!r}")
    if distill and teacher == "none":
        raise ValueError(
            "distill=True needs a teacher subnet, but teacher='none' trains no largest subnet; "
            "set teacher='largest' or distill=False"
        )
    if not 0 < decay_rate <= 1 or decay_epochs <= 0:
        raise ValueError(f"need 0 < decay_rate <= 1 and decay_epochs > 0, got {decay_rate} and {decay_epochs}")
    if not 0 <= lr_floor <= 1 or warmup_epochs < 0:
        raise ValueError(f"need 0 <= lr_floor <= 1 and warmup_epochs >= 0, got {lr_floor} and {warmup_epochs}")
