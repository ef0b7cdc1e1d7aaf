"""Once-for-All: progressive shrinking of an elastic supernet in one resumable run (Cai et al., ICLR 2020).

The run walks through the paper's phases (Sec. 3.2, Fig. 3; reference ``train_ofa_net.py``):

======== ========================================= =====================
phase    sizes sampled (kernel / depth / expand)   subnets per step
======== ========================================= =====================
full     largest / largest / largest               1
kernel   all / largest / largest                   1
depth-1  all / two largest / largest               2
depth-2  all / all / largest                       2
expand-1 all / all / two largest                   4
expand-2 all / all / all                           4
======== ========================================= =====================

The input resolution is sampled from all of the space's resolutions in every phase. Each phase has its own
epochs, peak learning rate and linear warm-up followed by a cosine decay to zero, and starts with fresh optimizer
momentum, as the reference runs each phase as a separate job. At the end of the ``full`` phase the largest
network is frozen as the teacher; every later subnet trains on ``CE(logits, y) + kd_weight * KD(logits,
teacher)``. Before each expand phase the hidden channels are sorted by importance. The phase index lives in the
checkpoint and the teacher in the state dict, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.func import functional_call
from typing_extensions import override

from lightning_nas.arch import Arch, validate_arch
from lightning_nas.callbacks.bn_recalibration import RecalibrateBatchNorm
from lightning_nas.functional import soft_target_cross_entropy
from lightning_nas.methods.base import CHECKPOINT_KEY, Batches, NASModule, SubnetResult, weight_decay_groups
from lightning_nas.sampling import derive_seed, seeded_random_ops, step_generator
from lightning_nas.spaces.elastic import ElasticSpace, resize_images

__all__ = ["OnceForAll", "Phase", "progressive_shrinking_phases"]

Batch = tuple[Tensor, Tensor]
PHASE_NAMES = ("full", "kernel", "depth-1", "depth-2", "expand-1", "expand-2")


@dataclass(frozen=True)
class Phase:
    """One phase of progressive shrinking.

    Args:
        name: one of ``full, kernel, depth-1, depth-2, expand-1, expand-2``.
        limits: allowed values per dimension (``kernel``, ``depth``, ``expand``); resolution is always free.
        epochs: epochs of the phase.
        lr: peak learning rate.
        warmup_epochs: epochs of linear warm-up from 0 to ``lr``.
        subnets_per_step: subnets sampled per step, their gradients summed before one optimizer step.
    """

    name: str
    limits: Mapping[str, tuple[int, ...]]
    epochs: int
    lr: float
    warmup_epochs: int
    subnets_per_step: int

    def learning_rate(self, progress: float) -> float:
        """The learning rate ``progress`` epochs into the phase: linear warm-up, then cosine to 0.

        Example:
            >>> phase = Phase("kernel", {}, epochs=10, lr=1.0, warmup_epochs=2, subnets_per_step=1)
            >>> phase.learning_rate(1.0), phase.learning_rate(2.0), phase.learning_rate(6.0), phase.learning_rate(10.0)
            (0.5, 1.0, 0.5, 0.0)
        """
        if progress < self.warmup_epochs:
            return self.lr * progress / self.warmup_epochs
        decay = max(1e-12, self.epochs - self.warmup_epochs)
        return 0.5 * self.lr * (1.0 + math.cos(math.pi * min(1.0, (progress - self.warmup_epochs) / decay)))


def progressive_shrinking_phases(
    dimensions: Mapping[str, Sequence[int]],
    epochs: Sequence[int],
    lrs: Sequence[float],
    warmup_epochs: Sequence[int],
    subnets_per_step: Sequence[int],
) -> list[Phase]:
    """The six phases for a space offering ``dimensions`` (``kernel``, ``depth``, ``expand``), largest first.

    Example:
        >>> dims = {"kernel": (3, 5, 7), "depth": (2, 3, 4), "expand": (3, 4, 6)}
        >>> phases = progressive_shrinking_phases(dims, [1] * 6, [0.1] * 6, [0] * 6, [1, 1, 2, 2, 4, 4])
        >>> [(p.name, dict(p.limits)) for p in phases][2]
        ('depth-1', {'kernel': (3, 5, 7), 'depth': (3, 4), 'expand': (6,)})
    """
    for name, values in (("epochs", epochs), ("lrs", lrs), ("warmup_epochs", warmup_epochs)):
        if len(values) != len(PHASE_NAMES):
            raise ValueError(f"phase_{name} needs one value per phase ({', '.join(PHASE_NAMES)}), got {list(values)}")
    if len(subnets_per_step) != len(PHASE_NAMES) or min(subnets_per_step) < 1:
        raise ValueError(f"subnets_per_step needs one positive value per phase, got {list(subnets_per_step)}")
    if min(epochs) < 0 or any(w > e for w, e in zip(warmup_epochs, epochs)) or min(warmup_epochs) < 0:
        raise ValueError(f"phase epochs must be >= warm-up epochs >= 0, got {list(epochs)} and {list(warmup_epochs)}")
    missing = sorted({"kernel", "depth", "expand"} - set(dimensions))
    if missing:
        raise ValueError(f"progressive shrinking needs dimensions kernel, depth and expand; the space lacks {missing}")
    kernel, depth, expand = (tuple(sorted(dimensions[d], reverse=True)) for d in ("kernel", "depth", "expand"))
    limits = [
        {"kernel": kernel[:1], "depth": depth[:1], "expand": expand[:1]},
        {"kernel": kernel, "depth": depth[:1], "expand": expand[:1]},
        {"kernel": kernel, "depth": depth[:2], "expand": expand[:1]},
        {"kernel": kernel, "depth": depth, "expand": expand[:1]},
        {"kernel": kernel, "depth": depth, "expand": expand[:2]},
        {"kernel": kernel, "depth": depth, "expand": expand},
    ]
    return [
        Phase(name, {d: tuple(sorted(v)) for d, v in limit.items()}, e, lr, w, n)
        for name, limit, e, lr, w, n in zip(PHASE_NAMES, limits, epochs, lrs, warmup_epochs, subnets_per_step)
    ]


class OnceForAll(NASModule):
    """Progressive shrinking with knowledge distillation, as one LightningModule and one run.

    Defaults are the paper's ImageNet values at batch 2048 (32 GPUs x 64): full network 180 epochs at lr 2.6
    (Sec. 4), then the reference ``train_ofa_net.py`` phases (base lr per 64 images x 32): kernel 120 epochs at
    0.96, depth 25 at 0.08 and 120 at 0.24, expand 25 at 0.08 and 120 at 0.24; warm-up 5 epochs in the long phases;
    SGD with Nesterov momentum 0.9, weight decay 3e-5 (none on BN and biases), label smoothing 0.1, KD weight 1.

    Under DDP use ``--trainer.strategy=ddp_find_unused_parameters_true`` (subnets skip blocks) and not
    ``sync_batchnorm`` (it would replace the elastic batch norms).

    Args:
        space: an elastic space with ``kernel``, ``depth`` and ``expand`` dimensions.
        phase_epochs: epochs of ``full, kernel, depth-1, depth-2, expand-1, expand-2``.
        phase_lrs: peak learning rate of each phase.
        phase_warmup_epochs: warm-up epochs of each phase.
        subnets_per_step: subnets sampled per training step in each phase.
        kd_weight: weight of the distillation loss from the frozen teacher (0 disables the teacher).
        label_smoothing: label smoothing of the cross entropy.
        momentum: SGD (Nesterov) momentum.
        weight_decay: weight decay of weights with two or more dimensions.
        seed: seed of subnet sampling: subnet ``k`` of step ``t`` is drawn from ``step_generator(seed, t, k)``.
        calibration_images: training images for BN recalibration before validation (0: no recalibration).
        calibration_batch_size: images per recalibration batch.
        channels_last: run in channels-last memory format.
        nan_policy: ``"stop"`` (raise, naming the subnet's loss and the step) or ``"skip"`` (warn and skip the
            whole step) on a non-finite loss.

    Example:
        >>> from lightning_nas.spaces import ElasticMobileNetV3
        >>> space = ElasticMobileNetV3(preset="cifar", num_classes=10)
        >>> model = OnceForAll(space, phase_epochs=[1] * 6, phase_warmup_epochs=[0] * 6)
        >>> [p.subnets_per_step for p in model.phases], model.phase.name
        ([1, 1, 2, 2, 4, 4], 'full')
    """

    BATCHES: ClassVar[Batches] = "plain"

    space: ElasticSpace

    def __init__(
        self,
        space: ElasticSpace,
        *,
        phase_epochs: Sequence[int] = (180, 120, 25, 120, 25, 120),
        phase_lrs: Sequence[float] = (2.6, 0.96, 0.08, 0.24, 0.08, 0.24),
        phase_warmup_epochs: Sequence[int] = (5, 5, 0, 5, 0, 5),
        subnets_per_step: Sequence[int] = (1, 1, 2, 2, 4, 4),
        kd_weight: float = 1.0,
        label_smoothing: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 3e-5,
        seed: int = 0,
        calibration_images: int = 2000,
        calibration_batch_size: int = 200,
        channels_last: bool = False,
        nan_policy: Literal["stop", "skip"] = "stop",
    ) -> None:
        if not isinstance(space, ElasticSpace):
            raise TypeError(f"OnceForAll needs an ElasticSpace, got {type(space).__name__}")
        super().__init__(space, channels_last=channels_last, nan_policy=nan_policy)
        self.save_hyperparameters(ignore=["space"])
        self.automatic_optimization = False
        self.phases = progressive_shrinking_phases(
            space.dimensions(), phase_epochs, phase_lrs, phase_warmup_epochs, subnets_per_step
        )
        self.kd_weight, self.label_smoothing = kd_weight, label_smoothing
        self.momentum, self.weight_decay, self.seed = momentum, weight_decay, seed
        self.calibration_images, self.calibration_batch_size = calibration_images, calibration_batch_size
        self.phase_index = -1  # no phase entered yet
        self.teacher: nn.Module | None = None
        self.subnet_statistics: dict[str, dict[str, Tensor]] = {}
        self.last_subnets: list[Arch] = []  # the subnets the last training step trained
        self._val_counts: dict[str, tuple[Arch, Tensor]] = {}  # evaluated subnet -> (arch, [correct, images])
        self._subnet_results: list[SubnetResult] = []  # the evaluation subnets of the last validation

    # ------------------------------------------------------------------------------------------------- phases
    @property
    def phase(self) -> Phase:
        """The phase being trained (the first before training starts)."""
        return self.phases[max(self.phase_index, 0)]

    def phase_at_epoch(self, epoch: int) -> int:
        """Index of the phase that epoch ``epoch`` belongs to (the last phase after the schedule ends)."""
        end = 0
        for index, phase in enumerate(self.phases):
            end += phase.epochs
            if epoch < end:
                return index
        return len(self.phases) - 1

    def check_subnet(self, arch: Mapping[str, Any], phase: Phase | None = None) -> Arch:
        """``arch`` if ``phase`` (default: the current one) samples it, else ``ValueError`` naming key and values."""
        phase = self.phase if phase is None else phase
        try:
            return validate_arch(arch, self.space.restrict(phase.limits))
        except ValueError as err:
            raise ValueError(f"phase {phase.name!r} does not train this subnet: {err}") from None

    def _enter_phase(self, index: int) -> None:
        """Leave the current phase for phase ``index``: take the teacher, sort channels, reset the momentum."""
        previous = self.phases[self.phase_index] if self.phase_index >= 0 else None
        phase = self.phases[index]
        if self.teacher is None and self.kd_weight > 0 and index > 0:
            self._take_teacher()
        expand_before = set(previous.limits["expand"]) if previous is not None else set()
        if previous is not None and len(phase.limits["expand"]) > 1 and set(phase.limits["expand"]) != expand_before:
            self.space.reorganize_channels(keep_within=sorted(expand_before - {max(expand_before)}))
        for optimizer in self._optimizer_list():
            optimizer.state.clear()
        self.phase_index = index
        rank_zero_info(f"OnceForAll: phase {phase.name} ({phase.epochs} epochs, lr {phase.lr}): {dict(phase.limits)}")

    def _take_teacher(self) -> None:
        teacher = self.space.export_subnet(self.space.sample_max_subnet(), fixed_resolution=False)
        self.teacher = teacher.eval().requires_grad_(False)

    # ----------------------------------------------------------------------------------------------- training
    @override
    def on_fit_start(self) -> None:
        total = sum(p.epochs for p in self.phases)
        if self.trainer.max_epochs not in (None, -1, total):
            rank_zero_warn(f"max_epochs={self.trainer.max_epochs} but the phases add up to {total} epochs")

    @override
    def on_train_epoch_start(self) -> None:
        target = self.phase_at_epoch(self.current_epoch)
        while self.phase_index < target:
            self._enter_phase(self.phase_index + 1)

    @override
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        x, y = batch
        optimizer = self.optimizers()
        phase = self.phase
        lr = self._set_learning_rate(batch_idx)
        optimizer.zero_grad()  # type: ignore[union-attr]
        teacher_logits: dict[int | None, Tensor] = {}
        total = torch.zeros((), device=x.device)
        self.last_subnets = []
        for k in range(phase.subnets_per_step):
            # 1. sample subnet k of this step from the phase's sizes: every rank draws the same one
            arch = self.space.sample_subnet(step_generator(self.seed, self.global_step, k), phase.limits)
            self.space.activate(arch)
            self.last_subnets.append(arch)
            # 2. its loss: cross entropy plus distillation from the frozen teacher at the same resolution
            inputs = resize_images(x, _resolution(arch))
            dropout_seed = derive_seed(self.seed, "dropout", self.global_rank, self.global_step, k)
            with seeded_random_ops(dropout_seed, x.device):  # resumable dropout masks
                logits = self(inputs)
            soft = self._teacher_logits(inputs, _resolution(arch), teacher_logits)
            loss = self.training_loss(logits, y, soft)
            if not self.check_finite(loss, f"training loss of subnet {k}"):
                optimizer.zero_grad()  # type: ignore[union-attr]
                return None  # skip the whole step: no subnet of it updates the weights
            # 3. accumulate its gradient; one optimizer step for all subnets of the step
            self.manual_backward(loss)
            total = total + loss.detach()
        optimizer.step()  # type: ignore[union-attr]
        self.log("train/loss", total / phase.subnets_per_step, prog_bar=True)
        self.log("train/lr", lr)
        self.log("train/phase", float(self.phase_index))
        return total / phase.subnets_per_step

    def training_loss(self, logits: Tensor, targets: Tensor, teacher_logits: Tensor | None) -> Tensor:
        """``CE_smooth(logits, y) + kd_weight * KD(logits, teacher_logits)``; override to change the objective."""
        loss = nn.functional.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        if teacher_logits is not None and self.kd_weight > 0:
            loss = loss + self.kd_weight * soft_target_cross_entropy(logits, teacher_logits)
        return loss

    def _teacher_logits(self, inputs: Tensor, resolution: int | None, cache: dict[int | None, Tensor]) -> Tensor | None:
        if self.teacher is None or self.kd_weight <= 0:
            return None
        if resolution not in cache:
            with torch.no_grad():
                cache[resolution] = self.teacher(inputs)
        return cache[resolution]

    def _set_learning_rate(self, batch_idx: int) -> float:
        start = sum(p.epochs for p in self.phases[: max(self.phase_index, 0)])
        batches = self.trainer.num_training_batches
        fraction = batch_idx / batches if math.isfinite(batches) and batches > 0 else 0.0
        lr = self.phase.learning_rate(self.current_epoch - start + fraction)
        for optimizer in self._optimizer_list():
            for group in optimizer.param_groups:
                group["lr"] = lr
        return lr

    # --------------------------------------------------------------------------------------------- evaluation
    def evaluation_subnets(self) -> dict[str, Arch]:
        """The largest and smallest subnets the current phase trains."""
        limits = self.phase.limits
        return {"max": self.space.sample_max_subnet(limits), "min": self.space.sample_min_subnet(limits)}

    def set_subnet_statistics(self, statistics: dict[str, dict[str, Tensor]]) -> None:
        """BN statistics per evaluated subnet, from :class:`~lightning_nas.callbacks.RecalibrateBatchNorm`."""
        self.subnet_statistics = statistics

    @override
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    @override
    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: Batch, stage: str) -> None:
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for name, arch in self.evaluation_subnets().items():
            self.space.activate(arch)
            statistics = self.subnet_statistics.get(name, {})
            logits = functional_call(self.space, statistics, (x,))
            loss = nn.functional.cross_entropy(logits, y)
            accuracy = (logits.argmax(1) == y).float().mean()
            if stage == "val":
                self._count_correct(name, arch, accuracy * len(y), len(y))
            self.log(f"{stage}/{name}/loss", loss, sync_dist=True, batch_size=len(y))
            self.log(f"{stage}/{name}/acc", accuracy, prog_bar=True, sync_dist=True, batch_size=len(y))

    # ------------------------------------------------------------------------------------ result and plumbing
    @override
    def sampled_archs(self) -> list[Arch]:
        """The subnets the last training step trained."""
        return [dict(arch) for arch in self.last_subnets]

    @override
    def current_arch(self) -> Arch:
        """The largest subnet of the current phase."""
        return self.space.sample_max_subnet(self.phase.limits)

    @override
    def configure_optimizers(self) -> Any:
        groups = weight_decay_groups(self.space, self.weight_decay)
        return torch.optim.SGD(groups, lr=self.phase.lr, momentum=self.momentum, nesterov=True)

    @override
    def configure_callbacks(self) -> list[pl.Callback]:
        if self.calibration_images <= 0:
            return []
        return [RecalibrateBatchNorm(self.calibration_images, self.calibration_batch_size)]

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        entry = self.space.checkpoint_entry(self.phase.limits)
        checkpoint[CHECKPOINT_KEY].update({"phase": self.phase.name, "phase_index": self.phase_index, **entry})

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.phase_index = self._checkpoint_phase(checkpoint[CHECKPOINT_KEY])
        if any(key.startswith("teacher.") for key in checkpoint.get("state_dict", {})) and self.teacher is None:
            self._take_teacher()  # the right shape; load_state_dict fills in the saved weights next

    def _checkpoint_phase(self, meta: Mapping[str, Any]) -> int:
        """The phase index a checkpoint was saved in, refused unless this run has that phase at that index."""
        index, name = meta.get("phase_index"), meta.get("phase")
        valid = ", ".join(p.name for p in self.phases)
        if not isinstance(index, int) or not -1 <= index < len(self.phases) or self.phases[max(index, 0)].name != name:
            raise ValueError(f"checkpoint is in phase {name!r} (index {index!r}); this run's phases are {valid}")
        return index

    def _optimizer_list(self) -> list[torch.optim.Optimizer]:
        if self._trainer is None or not self.trainer.optimizers:
            return []
        return list(self.trainer.optimizers)

    # ------------------------------------------------------------------------------------ architecture logging
    @override
    def subnet_results(self) -> list[SubnetResult]:
        """The evaluation subnets (:meth:`evaluation_subnets`) of the last validation run, each with its accuracy
        over the whole validation set and all ranks (``"val/acc"``, the same value as ``val/<name>/acc``), its
        ``"params"`` and its ``"flops"`` (multiply-accumulates per image, analytic)."""
        return [(dict(arch), dict(metrics)) for arch, metrics in self._subnet_results]

    @override
    def on_validation_epoch_start(self) -> None:
        self._val_counts = {}

    @override
    def on_validation_epoch_end(self) -> None:
        if not self._val_counts:
            return
        names = list(self._val_counts)
        counts = torch.stack([self._val_counts[name][1] for name in names])
        totals = self.trainer.strategy.reduce(counts, reduce_op="sum")  # every rank evaluated its own shard
        self._subnet_results = []
        for name, (correct, images) in zip(names, totals.tolist()):
            arch = self._val_counts[name][0]
            metrics = {
                "val/acc": correct / max(images, 1.0),
                "params": float(self.space.count_params(arch)),
                "flops": float(self.space.count_flops(arch)),
            }
            self._subnet_results.append((arch, metrics))
        self._val_counts = {}

    def _count_correct(self, name: str, arch: Arch, correct: Tensor, images: int) -> None:
        counts = self._val_counts.get(name, (arch, correct.new_zeros(2, dtype=torch.float64)))[1]
        counts += torch.stack([correct.detach().double(), correct.new_tensor(float(images), dtype=torch.float64)])
        self._val_counts[name] = (dict(arch), counts)


def _resolution(arch: Mapping[str, Any]) -> int | None:
    value = arch.get("resolution")
    return None if value is None else int(value)
