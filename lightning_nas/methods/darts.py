"""DARTS: Differentiable Architecture Search (Liu et al., ICLR 2019), Algorithm 1.

Each training step is the paper's two updates on a ``{"train": batch, "val": batch}`` pair:

1. architecture step: ``alpha -= arch_lr * grad_alpha L_val(w - xi * grad_w L_train(w, alpha), alpha)``
   (``xi = 0`` for first order), on the validation batch;
2. weight step: ``w -= lr * grad_w L_train(w, alpha)``, on the training batch.

``weights_first=True`` swaps the two, as NAS-Bench-201's reference searches of DARTS-V1 and GDAS do (AutoDL-Projects
``exps/algos/DARTS-V1.py`` and ``GDAS.py``): the architecture step then sees the weights this step just updated.

Hyperparameters default to the paper's CIFAR-10 search (Sec. 3.2; reference code ``cnn/train_search.py``).
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from typing_extensions import override

from lightning_nas.arch import Arch, Genotype
from lightning_nas.functional import darts_arch_gradient
from lightning_nas.methods.base import ArchProbabilities, Batches, NASModule, check_batches
from lightning_nas.sampling import derive_seed
from lightning_nas.spaces.base import DifferentiableSpace

__all__ = ["DARTS"]

Batch = tuple[Tensor, Tensor]


class DARTS(NASModule):
    """Differentiable architecture search with first- or second-order architecture gradients.

    Args:
        space: a differentiable space, e.g. :class:`~lightning_nas.spaces.DartsCellSpace`.
        order: ``"second"`` unrolls one weight step (the paper's best result); ``"first"`` ignores it (faster).
        weight_lr: SGD learning rate of the weights, annealed by cosine to ``weight_lr_min`` (0.025 -> 0.001).
        weight_lr_min: final weight learning rate.
        weight_momentum: SGD momentum (0.9).
        weight_nesterov: Nesterov momentum (off in the paper; on in NAS-Bench-201's runs of DARTS and GDAS).
        weight_decay: SGD weight decay (3e-4).
        gradient_clip: max gradient norm of the weights (5).
        arch_lr: Adam learning rate of the alphas (3e-4).
        arch_betas: Adam betas of the alphas ((0.5, 0.999)).
        arch_weight_decay: Adam weight decay of the alphas (1e-3).
        unrolled_lr: ``xi`` of the virtual step; ``None`` uses the current weight learning rate, as the paper does.
        hvp_eps: ``eps = hvp_eps / ||grad_w' L_val||`` for the finite-difference Hessian-vector product (0.01).
        arch_warmup_epochs: epochs of weight-only training before the alphas start to move (0 in the paper).
        arch_fp32: compute the architecture gradient in fp32 even under mixed precision (the weight step still
            uses it). The alpha gradient subtracts nearly equal op contributions (the softmax Jacobian) and, in
            second order, differences an unrolled step: under bf16 autocast it is off by about 10% (first order) and
            more than 100% (second order) on the tester's tiny problem.
        channels_last: run the supernet in channels-last memory format.
        seed: seeds the space's relaxation noise, drawn per ``(seed, step, phase)`` (none in DARTS's softmax; the
            Gumbel and Dirichlet samples of GDAS and DrNAS).
        nan_policy: ``"stop"`` (raise, naming the loss and step) or ``"skip"`` (warn and skip the update) on a
            non-finite loss or architecture gradient.
        weights_first: each step updates the weights, then the alphas (NAS-Bench-201's reference loop for DARTS-V1
            and GDAS); the default is the paper's Algorithm 1, alphas first. In second order the unrolled step
            starts from the weights the step has just updated.

    Example:
        >>> from lightning_nas.spaces import DartsCellSpace
        >>> model = DARTS(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=2), order="first")
        >>> model.genotype.steps
        2
    """

    BATCHES: ClassVar[Batches] = "bilevel"

    space: DifferentiableSpace

    def __init__(
        self,
        space: DifferentiableSpace,
        *,
        order: Literal["first", "second"] = "second",
        weight_lr: float = 0.025,
        weight_lr_min: float = 0.001,
        weight_momentum: float = 0.9,
        weight_nesterov: bool = False,
        weight_decay: float = 3e-4,
        gradient_clip: float = 5.0,
        arch_lr: float = 3e-4,
        arch_betas: tuple[float, float] = (0.5, 0.999),
        arch_weight_decay: float = 1e-3,
        unrolled_lr: float | None = None,
        hvp_eps: float = 0.01,
        arch_warmup_epochs: int = 0,
        arch_fp32: bool = True,
        channels_last: bool = False,
        seed: int = 0,
        nan_policy: Literal["stop", "skip"] = "stop",
        weights_first: bool = False,
    ) -> None:
        if not isinstance(space, DifferentiableSpace):
            raise TypeError(f"DARTS needs a DifferentiableSpace, got {type(space).__name__}")
        if order not in ("first", "second"):
            raise ValueError(f"order must be 'first' or 'second', got {order!r}")
        super().__init__(space, channels_last=channels_last, nan_policy=nan_policy)
        self.save_hyperparameters(ignore=["space"])
        self.automatic_optimization = False
        self.order: Literal["first", "second"] = order
        self.weight_lr, self.weight_lr_min = weight_lr, weight_lr_min
        self.weight_momentum, self.weight_decay, self.gradient_clip = weight_momentum, weight_decay, gradient_clip
        self.weight_nesterov = weight_nesterov
        self.arch_lr, self.arch_betas, self.arch_weight_decay = (
            arch_lr,
            (arch_betas[0], arch_betas[1]),
            arch_weight_decay,
        )
        self.unrolled_lr, self.hvp_eps, self.arch_warmup_epochs = unrolled_lr, hvp_eps, arch_warmup_epochs
        self.arch_fp32, self.seed, self.weights_first = arch_fp32, seed, weights_first
        # DDP must leave the alphas alone: their gradient never passes through DDP's backward hooks (it comes from
        # torch.autograd.grad), and architecture_step averages it across ranks itself.
        alpha_ids = {id(p) for p in space.arch_parameters()}
        self._ddp_params_and_buffers_to_ignore = [n for n, p in self.named_parameters() if id(p) in alpha_ids]

    # ----------------------------------------------------------------------------------------------- the result
    @property
    def genotype(self) -> Genotype:
        """The genotype the current alphas select (spaces with a ``genotype()`` method, e.g. the DARTS cell)."""
        genotype = getattr(self.space, "genotype", None)
        if genotype is None:
            raise AttributeError(f"{type(self.space).__name__} has no genotype(); use current_arch()")
        return genotype()

    @override
    def current_arch(self) -> Arch:
        return self.space.export_arch()

    @override
    def export(self) -> Arch | Genotype:
        """The genotype on DARTS cell spaces, else the choice mapping."""
        return self.genotype if hasattr(self.space, "genotype") else self.current_arch()

    @override
    def arch_probabilities(self) -> ArchProbabilities | None:
        """The space's softmax of each edge's alphas (see ``DartsCellSpace.arch_probabilities``)."""
        return self.space.arch_probabilities()

    # ------------------------------------------------------------------------------------------------- training
    @override
    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> Tensor:
        train_batch, val_batch = _split_bilevel(batch, self)
        self.schedule_relaxation()
        step = self.global_step  # both phases draw their noise from this step's seed, in either order
        moves_alphas = self.current_epoch >= self.arch_warmup_epochs
        if self.weights_first:
            loss = self._weight_phase(train_batch, step)
            if moves_alphas:
                self._architecture_phase(train_batch, val_batch, step)
        else:
            # Algorithm 1: the architecture step on a validation batch (line 2), then the weight step (line 3).
            if moves_alphas:
                self._architecture_phase(train_batch, val_batch, step)
            loss = self._weight_phase(train_batch, step)
        return loss

    def _architecture_phase(self, train_batch: Batch, val_batch: Batch, step: int) -> None:
        self.space.relaxation.resample(derive_seed(self.seed, step, "architecture"))
        self.architecture_step(train_batch, val_batch)

    def _weight_phase(self, train_batch: Batch, step: int) -> Tensor:
        self.space.relaxation.resample(derive_seed(self.seed, step, "weights"))
        loss = self.weight_step(train_batch)
        self.lr_schedulers().step()  # type: ignore[union-attr]
        return loss

    def schedule_relaxation(self) -> None:
        """Set the relaxation's scheduled coefficients for this step (GDAS's temperature, DARTS-'s skip weight);
        DARTS has none."""

    def search_progress(self) -> float:
        """How far the search is: ``global_step / total steps`` in ``[0, 1]`` (0 without a known length)."""
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 0
        if not total or total == float("inf"):
            return 0.0
        return min(1.0, self.global_step / float(total))

    def architecture_step(self, train_batch: Batch, val_batch: Batch) -> None:
        """One Adam step of the alphas along the (first- or second-order) architecture gradient."""
        weight_opt, arch_opt = self._optimizer_pair()
        alphas = self.space.arch_parameters()
        try:
            grads, val_loss = self.architecture_gradient(train_batch, val_batch)
        except FloatingPointError:  # a loss inside the unrolled step was not finite (checked below, outside the
            grads = None  # handler, so that a stop shows one error rather than two chained tracebacks)
        if grads is None:
            self.check_finite(torch.tensor(float("nan")), "loss in the unrolled architecture step")
            return
        # one check (one cross-rank decision) for the loss and every gradient
        if not self.check_finite(torch.stack([val_loss.float(), *(g.norm() for g in grads)]), "architecture loss"):
            return
        arch_opt.zero_grad()
        for alpha, grad in zip(alphas, grads):
            # Every rank's gradient comes from its own data shard: average them so the alphas stay identical.
            alpha.grad = self.trainer.strategy.reduce(grad, reduce_op="mean")
        # The raw optimizer: Lightning's global_step then counts weight steps only.
        arch_opt.optimizer.step()
        self.log("search/arch_loss", val_loss, prog_bar=True)

    def architecture_gradient(self, train_batch: Batch, val_batch: Batch) -> tuple[list[Tensor], Tensor]:
        """The architecture gradient of :attr:`order` and the validation loss, in fp32 unless ``arch_fp32=False``."""
        weights = [p for p in self.space.weight_parameters() if p.requires_grad]
        xi = self._optimizer_pair()[0].param_groups[0]["lr"] if self.unrolled_lr is None else self.unrolled_lr
        (x_train, y_train), (x_val, y_val) = train_batch, val_batch
        device_type = x_val.device.type
        with torch.autocast(device_type, enabled=False) if self.arch_fp32 else contextlib.nullcontext():
            return darts_arch_gradient(
                lambda: self.training_loss(self(x_train), y_train),
                lambda: self.architecture_loss(self(x_val), y_val),
                weights,
                self.space.arch_parameters(),
                order=self.order,
                xi=xi,
                eps_scale=self.hvp_eps,
            )

    def weight_step(self, train_batch: Batch) -> Tensor:
        """One SGD step of the weights with the alphas fixed; returns the training loss."""
        weight_opt, _ = self._optimizer_pair()
        x, y = train_batch
        with self.toggled_optimizer(weight_opt):  # alphas frozen: backward skips their gradients
            logits = self(x)
            loss = self.training_loss(logits, y)
            if not self.check_finite(loss, "training loss"):
                return loss.detach()
            weight_opt.zero_grad()
            self.manual_backward(loss)
            self.clip_gradients(
                weight_opt.optimizer, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm"
            )
            weight_opt.step()
        self.train_accuracy(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_accuracy, prog_bar=True)
        return loss.detach()

    def training_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``L_train(w, alpha)`` from a training batch's logits. Override to change the weights' objective."""
        return torch.nn.functional.cross_entropy(logits, targets)

    def architecture_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``L_val(w, alpha)`` from a validation batch's logits. Override to add, e.g., a cost of the alphas."""
        return torch.nn.functional.cross_entropy(logits, targets)

    @override
    def validation_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._classification_step(batch, "val")

    @override
    def test_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._classification_step(batch, "test")

    @override
    def on_fit_start(self) -> None:
        # DDP broadcasts rank 0's weights at start but skips the ignored alphas: broadcast them here.
        for alpha in self.space.arch_parameters():
            with torch.no_grad():
                alpha.copy_(self.trainer.strategy.broadcast(alpha.detach().clone(), src=0))

    @override
    def on_train_epoch_end(self) -> None:
        rank_zero_info(f"epoch {self.current_epoch}: {self._describe()}")

    # ------------------------------------------------------------------------------------------------ optimizers
    @override
    def configure_optimizers(self) -> Any:
        weight_opt = torch.optim.SGD(
            self.space.weight_parameters(),
            lr=self.weight_lr,
            momentum=self.weight_momentum,
            nesterov=self.weight_nesterov,
            weight_decay=self.weight_decay,
        )
        arch_opt = torch.optim.Adam(
            self.space.arch_parameters(), lr=self.arch_lr, betas=self.arch_betas, weight_decay=self.arch_weight_decay
        )
        # Cosine annealing over the whole run, stepped per batch (the paper steps per epoch: same curve, smoother).
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(weight_opt, T_max=total_steps, eta_min=self.weight_lr_min)
        return [weight_opt, arch_opt], [{"scheduler": schedule, "interval": "step"}]

    def _optimizer_pair(self) -> tuple[LightningOptimizer, LightningOptimizer]:
        weight_opt, arch_opt = self.optimizers()  # type: ignore[attr-defined]
        return weight_opt, arch_opt

    def _describe(self) -> str:
        metrics = self.trainer.callback_metrics
        scores = "".join(f"{name} {float(metrics[name]):.4f}, " for name in ("val/loss", "val/acc") if name in metrics)
        result = self.export()
        return scores + (f"genotype = {result}" if isinstance(result, Genotype) else f"arch = {result}")


def _split_bilevel(batch: Any, method: NASModule) -> tuple[Batch, Batch]:
    """The two halves of a bilevel batch; loaders given without a datamodule are checked here, batch by batch."""
    if not (isinstance(batch, dict) and {"train", "val"} <= set(batch)):
        check_batches(method, bilevel=False)
    return batch["train"], batch["val"]
