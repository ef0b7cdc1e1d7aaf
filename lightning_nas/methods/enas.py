"""ENAS: Efficient Neural Architecture Search via Parameter Sharing (Pham et al., ICML 2018), Sec. 2.2.

Training alternates two phases over ``{"train": batch, "val": batch}`` pairs, one optimizer step per batch:

1. ``weight_steps`` steps of the shared weights ``w``: each step samples a child ``m ~ pi(m; theta)`` (controller
   fixed) and takes an SGD step on ``L_train(m; w)`` with that child's path only;
2. ``controller_steps`` steps of the controller ``theta`` (``w`` fixed): each samples ``controller_samples`` children,
   scores each on the validation batch, ``R(m)`` = the child's accuracy (averaged across ranks), and takes an Adam
   step on ``-(R - b) log pi(m) - beta H(pi) + skip_weight * KL_skip``, with ``b`` a moving average of ``R``.

Every sample is drawn from ``step_generator(seed, step, k)``, so every rank draws the same children with no
communication, and a resumed run draws what the uninterrupted one would have. Deriving (Sec. 2.2, "Deriving
Architectures"): at each validation, ``derive_samples`` children are sampled and scored on the first validation
batch; the best is the result (:meth:`ENAS.current_arch`).

Defaults follow the reference code's CIFAR-10 micro search (``scripts/cifar10_micro_search.sh`` and ``src/utils.py``
at https://github.com/melodyguan/enas/tree/00787a5f5162814ce8f62a603b76738d240df8df); the configs in
``configs/enas/`` cite each value.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from lightning_nas.arch import Arch, Genotype
from lightning_nas.controllers import LSTMController, Policy, PolicySample, UniformPolicy
from lightning_nas.functional import mnasnet_reward, reinforce_loss, update_baseline
from lightning_nas.methods._child_cost import CostKind, child_cost, scoring_mode
from lightning_nas.methods.base import ArchProbabilities, Batches, NASModule
from lightning_nas.methods.darts import _split_bilevel
from lightning_nas.sampling import step_generator
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.spaces.darts_cell import DartsCellSpace

__all__ = ["ENAS"]

Batch = tuple[Tensor, Tensor]


class ENAS(NASModule):
    """ENAS search with an LSTM controller (or a uniform random policy) over any space's choices.

    ``trainer.global_step`` counts weight steps (phase 1), so ``max_steps`` bounds the shared-weight training of
    the learned and the random policy alike. Under DDP use ``strategy="ddp_find_unused_parameters_true"``: each
    step trains one child, so most shared weights get no gradient.

    Args:
        space: any :class:`~lightning_nas.spaces.SearchSpace` with at least one choice.
        policy: ``"lstm"`` (the ENAS controller) or ``"random"`` (uniform, never trained: the baseline).
        weight_steps: phase 1 length in steps (the reference code trains one epoch of shared weights per phase).
        controller_steps: phase 2 length in controller updates (30 for micro, 50 for macro search).
        controller_samples: children per controller update (``num_aggregate``: 10 for micro, 20 for macro).
        weight_lr: SGD learning rate of ``w`` (0.05), annealed by cosine with warm restarts to ``weight_lr_min``.
        weight_lr_min: final learning rate of each cosine cycle (0.0005).
        lr_restart_phases: first cosine cycle, in phases (``T_0 = 10`` epochs), each next one ``lr_restart_mult``
            times longer (``T_mul = 2``).
        lr_restart_mult: growth of the cosine cycles.
        weight_momentum: Nesterov momentum (0.9).
        weight_decay: weight decay of ``w`` (1e-4 micro, 2.5e-4 macro).
        gradient_clip: max gradient norm of ``w`` (5).
        controller_lr: Adam learning rate of ``theta`` (0.0035 micro, 0.001 macro; betas (0, 0.999), eps 1e-3).
        hidden_size: controller LSTM units (100, Sec. 3.1).
        temperature: controller logit temperature (none in the reference scripts; the paper's text says 5.0).
        tanh_constant: controller tanh constant (1.1 micro, 1.5 macro in the reference scripts; the text says 2.5).
        op_tanh_reduce: op logits use ``tanh_constant / op_tanh_reduce`` (2.5 in the reference scripts).
        entropy_weight: the entropy bonus ``beta`` (1e-4).
        baseline_decay: decay of the moving-average baseline (0.99).
        skip_target: prior skip-connection probability ``rho`` of macro search (0.4).
        skip_weight: weight of the skip penalty ``KL(p_skip || rho)`` (0.8 for macro search; 0 ignores it).
        reward_cost: ``None`` rewards accuracy; ``"params"`` or ``"flops"`` uses MnasNet's
            ``ACC * (cost / cost_target) ** w`` with the child's analytic parameter count or multiply-accumulates.
        cost_target: the target ``T`` of the MnasNet reward, in the cost's unit.
        cost_exponents: MnasNet's ``(alpha, beta)``: ``w`` below and above the target ((-0.07, -0.07)).
        derive_samples: children sampled and scored at each validation to pick the result.
        seed: seed of every architecture draw.
        channels_last: run the supernet in channels-last memory format.
        nan_policy: ``"stop"`` (raise, naming the loss and step) or ``"skip"`` (warn and skip that update) on a
            non-finite training loss of the shared weights or controller loss. A non-finite reward only drops its
            child from the controller update (with a warning), whatever the policy.

    Example:
        >>> from lightning_nas.spaces import DartsCellSpace
        >>> from lightning_nas.ops import ENAS_MICRO_OPS
        >>> model = ENAS(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=2, ops=ENAS_MICRO_OPS))
        >>> type(model.policy).__name__, model.export().steps
        ('LSTMController', 2)
    """

    BATCHES: ClassVar[Batches] = "bilevel"

    baseline: Tensor
    search_step: Tensor

    def __init__(
        self,
        space: SearchSpace,
        *,
        policy: Literal["lstm", "random"] = "lstm",
        weight_steps: int = 400,
        controller_steps: int = 30,
        controller_samples: int = 10,
        weight_lr: float = 0.05,
        weight_lr_min: float = 0.0005,
        lr_restart_phases: int = 10,
        lr_restart_mult: int = 2,
        weight_momentum: float = 0.9,
        weight_decay: float = 1e-4,
        gradient_clip: float = 5.0,
        controller_lr: float = 0.0035,
        hidden_size: int = 100,
        temperature: float | None = None,
        tanh_constant: float | None = 1.1,
        op_tanh_reduce: float = 2.5,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.99,
        skip_target: float = 0.4,
        skip_weight: float = 0.0,
        reward_cost: CostKind | None = None,
        cost_target: float = 1.0,
        cost_exponents: tuple[float, float] = (-0.07, -0.07),
        derive_samples: int = 10,
        seed: int = 0,
        channels_last: bool = False,
        nan_policy: Literal["stop", "skip"] = "stop",
    ) -> None:
        _check_arguments(policy, weight_steps, controller_steps, controller_samples, derive_samples, reward_cost)
        super().__init__(space, channels_last=channels_last, nan_policy=nan_policy)
        self.save_hyperparameters(ignore=["space"])
        self.automatic_optimization = False
        self.policy: Policy = (
            LSTMController.for_space(
                space,
                hidden_size=hidden_size,
                temperature=temperature,
                tanh_constant=tanh_constant,
                op_tanh_reduce=op_tanh_reduce,
                skip_target=skip_target,
            )
            if policy == "lstm"
            else UniformPolicy.for_space(space)
        )
        self.learns_policy = policy == "lstm"
        self.weight_steps, self.controller_steps, self.controller_samples = (
            weight_steps,
            controller_steps,
            controller_samples,
        )
        self.weight_lr, self.weight_lr_min = weight_lr, weight_lr_min
        self.lr_restart_phases, self.lr_restart_mult = lr_restart_phases, lr_restart_mult
        self.weight_momentum, self.weight_decay, self.gradient_clip = weight_momentum, weight_decay, gradient_clip
        self.controller_lr, self.entropy_weight, self.baseline_decay = controller_lr, entropy_weight, baseline_decay
        self.skip_weight = skip_weight
        self.reward_cost, self.cost_target = reward_cost, cost_target
        self.cost_exponents = (cost_exponents[0], cost_exponents[1])
        self.derive_samples, self.seed = derive_samples, seed
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("search_step", torch.zeros((), dtype=torch.long))  # the sampler's position
        self.sampled_accuracy = MulticlassAccuracy(num_classes=space.num_classes, average="micro")
        self.derived_arch: Arch | None = None
        self.derived_score: float | None = None
        self._probe_shape: tuple[int, ...] | None = None
        self.last_children: list[Arch] = []  # the children the last training step trained or scored
        self._cost_cache: dict[str, float] = {}
        self._last_sampled: list[Arch] = []  # the child the last training step trained (none in phase 2)
        # The controller stays out of DDP: every rank samples the same children and averages the reward, so its
        # gradients agree without communication (and phase 1 never touches it).
        self._ddp_params_and_buffers_to_ignore = [
            *(f"policy.{name}" for name, _ in self.policy.named_parameters()),
            *(f"policy.{name}" for name, _ in self.policy.named_buffers()),
            "baseline",
            "search_step",
        ]

    # ----------------------------------------------------------------------------------------------- the result
    @override
    def current_arch(self) -> Arch:
        """The derived child (best of ``derive_samples`` at the last validation), else the policy's greedy one."""
        return dict(self.derived_arch) if self.derived_arch is not None else self.policy.greedy()

    @override
    def export(self) -> Arch | Genotype:
        """A genotype on DARTS cell spaces (what :class:`~lightning_nas.methods.Retrain` trains), else the mapping."""
        arch = self.current_arch()
        return Genotype.from_arch(arch, self.space.steps) if isinstance(self.space, DartsCellSpace) else arch

    def derive(self, batch: Batch, num_samples: int) -> tuple[Arch, float]:
        """Sample ``num_samples`` children, score each on ``batch`` (averaged across ranks), return the best."""
        x, y = batch
        step = int(self.search_step)
        archs = [self.sample(step, f"derive{k}").arch for k in range(num_samples)]
        scores = self._reduce(torch.stack([self.child_reward(x, y, arch) for arch in archs]))
        scores = torch.where(torch.isfinite(scores), scores, torch.full_like(scores, -torch.inf))
        best = int(scores.argmax())
        return archs[best], float(scores[best])

    # ------------------------------------------------------------------------------------------------- training
    @override
    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> Tensor | None:
        train_batch, val_batch = _split_bilevel(batch, self)
        step = int(self.search_step)
        loss = None
        if step % (self.weight_steps + self.controller_steps) < self.weight_steps:
            # Phase 1: train the shared weights w on a child sampled from the fixed policy.
            loss = self.weight_step(train_batch, step)
        else:
            # Phase 2: train the policy with REINFORCE on validation rewards, w fixed.
            self.controller_step(val_batch, step)
        self.search_step += 1
        return loss

    def sample(self, step: int, k: int | str = 0) -> PolicySample:
        """Draw ``k`` of step ``step`` from the policy (in full precision, whatever the trainer's precision)."""
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self.policy.sample(step_generator(self.seed, step, k))

    def weight_step(self, train_batch: Batch, step: int) -> Tensor:
        """One SGD step of the sampled child's weights; returns the training loss."""
        weight_opt = self._optimizers()[0]
        with torch.no_grad():
            arch = self.sample(step).arch
        self._last_sampled = [arch]
        self.space.activate(arch)
        self.last_children = [arch]
        x, y = train_batch
        with self.toggled_optimizer(weight_opt):
            logits = self(x)
            loss = self.training_loss(logits, y)
            if not self.check_finite(loss, "training loss"):
                return loss.detach()
            weight_opt.zero_grad()  # unsampled ops keep grad None, so SGD leaves them (and their momentum) alone
            self.manual_backward(loss)
            self.clip_gradients(
                weight_opt.optimizer, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm"
            )
            weight_opt.step()
        self.lr_schedulers().step()  # type: ignore[union-attr]
        self.train_accuracy(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_accuracy, prog_bar=True)
        return loss.detach()

    def controller_step(self, val_batch: Batch, step: int) -> None:
        """Score ``controller_samples`` children on ``val_batch`` and take one REINFORCE step of the policy."""
        x, y = val_batch
        self._last_sampled = []  # children are scored here, not trained
        samples = [self.sample(step, k) for k in range(self.controller_samples)]
        self.last_children = [s.arch for s in samples]
        rewards = self._reduce(torch.stack([self.child_reward(x, y, s.arch) for s in samples]))
        valid = torch.isfinite(rewards)
        if not bool(valid.all()):
            rank_zero_warn(
                f"ENAS: {int((~valid).sum())} of {len(samples)} rewards at search step {step} are not finite "
                f"({rewards.tolist()}); those children are skipped and not learned from"
            )
            if not bool(valid.any()):
                return
        kept = [s for s, ok in zip(samples, valid.tolist()) if ok]
        rewards = rewards[valid]
        if self.learns_policy and not self._reinforce(kept, rewards):
            return  # a non-finite controller loss, skipped: the baseline stays too
        self.baseline.copy_(update_baseline(self.baseline, rewards, self.baseline_decay))
        self.log("search/reward", rewards.mean(), prog_bar=True)
        self.log("search/baseline", self.baseline)
        self.log("search/entropy", torch.stack([s.entropy.detach() for s in kept]).mean())

    def _reinforce(self, samples: list[PolicySample], rewards: Tensor) -> bool:
        """Adam step on ``-(R - b) log p - beta H + skip_weight * KL_skip``, averaged over the samples.

        Returns whether the step was taken (``False``: the loss was not finite and ``nan_policy="skip"``).
        """
        controller_opt = self._optimizers()[1]
        loss = reinforce_loss(
            torch.stack([s.log_prob for s in samples]),
            rewards.to(self.baseline.device),
            self.baseline,
            torch.stack([s.entropy for s in samples]),
            self.entropy_weight,
        )
        if self.skip_weight:
            loss = loss + self.skip_weight * torch.stack([s.skip_penalty for s in samples]).mean()
        if not self.check_finite(loss, "controller loss"):
            return False
        params = [p for p in self.policy.parameters() if p.requires_grad]
        # autograd.grad keeps the policy out of DDP's reducer and of the AMP loss scaler.
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        controller_opt.zero_grad()
        for param, grad in zip(params, grads):
            param.grad = grad
        controller_opt.optimizer.step()  # the raw optimizer: global_step counts weight steps only
        self.log("search/controller_loss", loss.detach())
        return True

    def child_reward(self, x: Tensor, y: Tensor, arch: Arch) -> Tensor:
        """Activate ``arch``, run it on ``(x, y)`` with batch statistics, and return :meth:`reward`."""
        self._probe_shape = tuple(x.shape[1:])
        self.space.activate(arch)
        with torch.no_grad(), scoring_mode(self.space):
            logits = self(x)
        return self.reward(logits, y, arch).detach().float().reshape(())

    def reward(self, logits: Tensor, targets: Tensor, arch: Arch) -> Tensor:
        """``R(m)`` of a child from its validation logits: accuracy, times MnasNet's cost factor if configured.

        Override to reward something else; the result is averaged across ranks, and a NaN is skipped.
        """
        accuracy = (logits.argmax(-1) == targets).float().mean()
        if self.reward_cost is None:
            return accuracy
        alpha, beta = self.cost_exponents
        return mnasnet_reward(accuracy, self.child_cost(arch), self.cost_target, alpha, beta).to(accuracy.device)

    def child_cost(self, arch: Arch) -> float:
        """The ``reward_cost`` of ``arch`` (parameters, or multiply-accumulates per image), cached per arch."""
        if self.reward_cost is None or self._probe_shape is None:
            raise ValueError("child_cost needs reward_cost='params' or 'flops' and a scored batch")
        key = repr(sorted(arch.items()))
        if key not in self._cost_cache:
            self.space.activate(arch)
            probe = torch.zeros(1, *self._probe_shape, device=self.device)
            self._cost_cache[key] = child_cost(self.space, probe, self.reward_cost)
        return self._cost_cache[key]

    def training_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``L_train(m; w)`` of the sampled child. Override to change the shared weights' objective."""
        return torch.nn.functional.cross_entropy(logits, targets)

    # ----------------------------------------------------------------------------------------------- evaluation
    @override
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        if batch_idx == 0:  # Deriving architectures: the best of derive_samples children on one batch.
            self.derived_arch, self.derived_score = self.derive((x, y), self.derive_samples)
        sampled = self.sample(int(self.search_step), f"validate{batch_idx}").arch
        for arch, metric, name in (
            (self.current_arch(), self.val_accuracy, "val/"),  # the result: val/loss, val/acc
            (sampled, self.sampled_accuracy, "val/sampled_"),  # a child sampled from the policy
        ):
            self.space.activate(arch)
            with scoring_mode(self.space):
                logits = self(x)
            metric(logits, y)
            self.log(f"{name}loss", _ce(logits, y), sync_dist=True)
            self.log(f"{name}acc", metric, prog_bar=name == "val/")

    @override
    def test_step(self, batch: Batch, batch_idx: int) -> Tensor:
        self.space.activate(self.current_arch())
        with scoring_mode(self.space):
            return self._classification_step(batch, "test")

    # ------------------------------------------------------------------------------------------------- plumbing
    @override
    def on_fit_start(self) -> None:
        model = self.trainer.strategy.model
        if isinstance(model, DistributedDataParallel) and not model.find_unused_parameters:
            raise ValueError(
                "ENAS trains one sampled child per step, so most shared weights get no gradient and DDP needs "
                "find_unused_parameters=True: use --trainer.strategy=ddp_find_unused_parameters_true"
            )
        with torch.no_grad():  # DDP broadcasts rank 0's weights at start but skips the ignored policy: do it here
            for param in self.policy.parameters():
                param.copy_(self.trainer.strategy.broadcast(param.detach().clone(), src=0))

    @override
    def on_train_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        scores = "".join(f"{n} {float(metrics[n]):.4f}, " for n in ("val/acc", "val/sampled_acc") if n in metrics)
        rank_zero_info(f"epoch {self.current_epoch}: {scores}{type(self).__name__} result = {self.export()}")

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["enas"] = {"derived_arch": self.derived_arch, "derived_score": self.derived_score}

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("enas", {})
        derived = state.get("derived_arch")
        self.derived_arch = None if derived is None else self.space.validate_arch(derived)
        self.derived_score = state.get("derived_score")

    @override
    def configure_optimizers(self) -> Any:
        weight_opt = torch.optim.SGD(
            self.space.parameters(),
            lr=self.weight_lr,
            momentum=self.weight_momentum,
            nesterov=True,
            weight_decay=self.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            weight_opt,
            T_0=self.lr_restart_phases * self.weight_steps,
            T_mult=self.lr_restart_mult,
            eta_min=self.weight_lr_min,
        )
        optimizers: list[torch.optim.Optimizer] = [weight_opt]
        if self.learns_policy:
            optimizers.append(
                torch.optim.Adam(self.policy.parameters(), lr=self.controller_lr, betas=(0.0, 0.999), eps=1e-3)
            )
        return optimizers, [{"scheduler": schedule, "interval": "step"}]

    def _optimizers(self) -> list[LightningOptimizer]:
        optimizers = self.optimizers()
        return list(optimizers) if isinstance(optimizers, list) else [optimizers]

    def _reduce(self, values: Tensor) -> Tensor:
        """The mean across ranks (identity on one process)."""
        return self.trainer.strategy.reduce(values, reduce_op="mean") if self._trainer is not None else values

    # ------------------------------------------------------------------------------------ architecture logging
    @override
    def arch_probabilities(self) -> ArchProbabilities | None:
        """The policy's distribution per decision, keyed by the space's choice names, candidates as strings.

        For the LSTM controller: each decision's softmax (a ``connect`` choice's Bernoulli) along the greedy
        rollout, i.e. given the most likely earlier decisions (one decoding pass; see
        :meth:`~lightning_nas.controllers.LSTMController.decision_probabilities`); for ``policy="random"``: uniform.
        """
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self.policy.decision_probabilities()

    @override
    def sampled_archs(self) -> list[Arch]:
        """The child whose shared weights the last training step trained; ``[]`` after a controller step (phase 2
        scores its children on validation data but trains none of their weights)."""
        return list(self._last_sampled)


def _ce(logits: Tensor, targets: Tensor) -> Tensor:
    return torch.nn.functional.cross_entropy(logits, targets)


def _check_arguments(
    policy: str, weight_steps: int, controller_steps: int, samples: int, derive_samples: int, cost: str | None
) -> None:
    if policy not in ("lstm", "random"):
        raise ValueError(f"policy must be 'lstm' or 'random', got {policy!r}")
    if weight_steps < 1 or controller_steps < 0 or samples < 1 or derive_samples < 1:
        raise ValueError(
            "need weight_steps >= 1, controller_steps >= 0, controller_samples >= 1 and derive_samples >= 1; got "
            f"{weight_steps=}, {controller_steps=}, controller_samples={samples}, {derive_samples=}"
        )
    if cost not in (None, "params", "flops"):
        raise ValueError(f"reward_cost must be None, 'params' or 'flops', got {cost!r}")
