"""CARS: Continuous Evolution for Efficient Neural Architecture Search (Yang et al., CVPR 2020).

One run alternates the paper's two phases (Algorithm 1):

1. supernet step: for ``generation_epochs`` epochs every training step trains one architecture of the pool
   (the population and its offspring), drawn uniformly with the per-step seed, so all ranks agree;
2. evolution step (at the end of the phase, in the validation loop): every pool member is scored on the held
   validation data with the shared weights (BatchNorm on each batch's own statistics, by default), and
   ``population_size`` survivors are selected by non-dominated sorting on (accuracy, params). Small models learn
   fastest, so that selection alone drops the large ones early (the small-model trap, Sec. 3.3); ``protect``
   interleaves a second ranking's fronts: (accuracy gain, params) in the paper's pNSGA-III (``"gain"``), so
   large models that learn slowly but steadily survive, or (accuracy, larger params) (``"size"``), so the most
   accurate large models always survive. The offspring of the next phase come from binary tournaments, uniform
   crossover and one-choice mutation.

The accuracy gain of an architecture is its accuracy now minus at its previous evaluation; offspring inherit the
mean previous accuracy of their parents (they inherit their weights too), and the first generation starts from
chance level ``1 / num_classes``. Here the offspring train with the population during the phase (the paper trains
the population and scores offspring afterwards), which gives every candidate a measured gain.

Population, pool and the history of every generation are in the checkpoint; at fit end the final Pareto front
is written as ``pareto_front.json`` in the log directory.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from typing_extensions import override

from lightning_nas.arch import Arch, atomic_write_text
from lightning_nas.calibration import batch_statistics
from lightning_nas.methods.base import Batches, NASModule, SubnetResult
from lightning_nas.sampling import crossover, mutate, sample_arch, step_generator
from lightning_nas.search.base import Mode, Trial
from lightning_nas.search.constraints import CostModel
from lightning_nas.search.nsga2 import pareto_front, rank_trials, select_survivors
from lightning_nas.spaces.base import DifferentiableSpace, SearchSpace

__all__ = ["CARS"]

Batch = tuple[Tensor, Tensor]
OBJECTIVES: dict[str, Mode] = {"accuracy": "max", "params": "min"}
PROTECT: dict[str, Mode] = {"accuracy_gain": "max", "params": "min"}
PROTECTIONS: dict[str, dict[str, Mode] | None] = {
    "gain": PROTECT,  # the paper's pNSGA-III: large models whose accuracy still rises fast survive
    "size": {"accuracy": "max", "params": "max"},  # the most accurate model of each larger size survives
    "none": None,  # plain NSGA-II
}


def _key(arch: Arch) -> str:
    return json.dumps(arch, sort_keys=True)


class CARS(NASModule):
    """Continuous evolution over a weight-sharing supernet, with pNSGA-III selection (one run, many generations).

    Args:
        space: any search space with ``activate(arch)``.
        population_size: survivors per generation (128 in the paper).
        generation_epochs: training epochs per generation.
        protect: protection against the small-model trap, whose fronts are interleaved with the (accuracy, params)
            fronts: ``"gain"`` ranks also by (accuracy gain, params), the paper's pNSGA-III; ``"size"`` ranks also by
            (accuracy, *larger* params), so the most accurate of the large models always survive (the selection of
            the authors' released code); ``"none"`` is plain NSGA-II.
        lr: SGD learning rate, cosine-annealed to 0 over the run.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        image_size: image height and width, for counting params.
        score_statistics: the BatchNorm statistics a pool member is scored with: ``"batch"`` (each validation
            batch's own, so every path is judged on its own features; batches of 64+ images) or ``"running"`` (the
            supernet's running statistics, which mix every path trained so far and blur the differences).
        seed: seed of the initial population, the training paths and the evolution.
        channels_last: run the supernet in channels-last memory format.
        nan_policy: ``"stop"`` (raise, naming the loss and step) or ``"skip"`` (warn; the step changes no weight) on
            a non-finite training loss.

    Example:
        >>> from lightning_nas.spaces import DartsCellSpace
        >>> model = CARS(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=1), population_size=4)
        >>> len(model.population), len(model.pool)
        (4, 4)
    """

    BATCHES: ClassVar[Batches] = "either"

    def __init__(
        self,
        space: SearchSpace,
        *,
        population_size: int = 16,
        generation_epochs: int = 1,
        protect: Literal["gain", "size", "none"] = "gain",
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        image_size: int = 32,
        score_statistics: Literal["batch", "running"] = "batch",
        seed: int = 0,
        channels_last: bool = False,
        nan_policy: Literal["stop", "skip"] = "stop",
    ) -> None:
        super().__init__(space, channels_last=channels_last, nan_policy=nan_policy)
        self.save_hyperparameters(ignore=["space"])
        if population_size < 2 or generation_epochs < 1:
            raise ValueError(
                f"need population_size >= 2 and generation_epochs >= 1, got {population_size=}, {generation_epochs=}"
            )
        if protect not in PROTECTIONS:
            raise ValueError(f"protect must be one of {sorted(PROTECTIONS)}, got {protect!r}")
        if score_statistics not in ("batch", "running"):
            raise ValueError(f"score_statistics must be 'batch' or 'running', got {score_statistics!r}")
        self.population_size, self.generation_epochs, self.protect = population_size, generation_epochs, protect
        self.score_statistics = score_statistics
        self.lr, self.momentum, self.weight_decay, self.seed = lr, momentum, weight_decay, seed
        self.costs = CostModel(space, image_size=image_size)
        self.choices = space.choices()
        generator = step_generator(seed, 0, "cars/init")
        self.population: list[Arch] = [sample_arch(self.choices, generator) for _ in range(population_size)]
        self.pool: list[Arch] = list(self.population)
        self.previous_accuracy: dict[str, float] = {}  # arch key -> accuracy at its last evaluation (or inherited)
        self.history: list[list[Trial]] = []  # every generation's scored pool
        self.last_path: Arch = dict(self.pool[0])  # the pool member the last training step trained
        alpha_ids = {id(p) for p in space.arch_parameters()} if isinstance(space, DifferentiableSpace) else set()
        self._alpha_ids = alpha_ids
        self._ddp_params_and_buffers_to_ignore = [n for n, p in self.named_parameters() if id(p) in alpha_ids]
        self._correct: Tensor | None = None

    # ------------------------------------------------------------------------------------------------ results
    def pareto_front(self) -> list[Trial]:
        """The Pareto front on (accuracy, params) of the last scored generation."""
        return pareto_front(self.history[-1], OBJECTIVES) if self.history else []

    @override
    def sampled_archs(self) -> list[Arch]:
        """The pool member the last training step trained."""
        return [dict(self.last_path)]

    @override
    def current_arch(self) -> Arch:
        """The most accurate architecture of the last scored generation (the first population member before)."""
        if not self.history:
            return dict(self.population[0])
        return dict(max(self.history[-1], key=lambda t: t.metrics["accuracy"]).arch)

    # ----------------------------------------------------------------------------------- phase 1: supernet step
    @override
    def training_step(self, batch: Batch | dict[str, Batch], batch_idx: int) -> Tensor:
        x, y = batch["train"] if isinstance(batch, dict) else batch
        generator = step_generator(self.seed, self.global_step, "cars/path")
        self.last_path = self.pool[int(torch.randint(len(self.pool), (1,), generator=generator))]
        self.space.activate(self.last_path)
        logits = self(x)
        loss = self.skip_unless_finite(torch.nn.functional.cross_entropy(logits, y), "training loss")
        self.train_accuracy(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_accuracy, prog_bar=True)
        return loss

    # ---------------------------------------------------------------------------------- phase 2: evolution step
    def _evolves_now(self) -> bool:
        return not self.trainer.sanity_checking and (self.current_epoch + 1) % self.generation_epochs == 0

    @override
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Score every pool member on this batch (only at the end of a generation)."""
        if not self._evolves_now():
            return
        x, y = batch
        if self._correct is None:
            self._correct = torch.zeros(len(self.pool) + 1, device=x.device, dtype=torch.float64)
        with batch_statistics(self) if self.score_statistics == "batch" else contextlib.nullcontext():
            for k, arch in enumerate(self.pool):
                self.space.activate(arch)
                self._correct[k] += (self(x).argmax(-1) == y).sum()
        self._correct[-1] += len(y)

    @override
    def on_validation_epoch_end(self) -> None:
        if self._correct is None:
            return
        totals = self.trainer.strategy.reduce(self._correct, reduce_op="sum")  # every rank scored its own shard
        self._correct = None
        accuracies = (totals[:-1] / totals[-1]).tolist()
        self.evolve(accuracies)
        self.log("cars/best_accuracy", max(accuracies))
        self.log("cars/front_size", float(len(self.pareto_front())))

    def evolve(self, accuracies: list[float]) -> None:
        """The evolution step given the pool's accuracies: score, select the population, breed the next pool."""
        if len(accuracies) != len(self.pool):
            raise ValueError(f"need one accuracy per pool member ({len(self.pool)}), got {len(accuracies)}")
        trials = [self._score(arch, accuracy) for arch, accuracy in zip(self.pool, accuracies)]
        self.history.append(trials)
        survivors = select_survivors(trials, self.population_size, OBJECTIVES, PROTECTIONS[self.protect])
        self.population = [t.arch for t in survivors]
        self.pool = self.population + self._offspring(survivors)
        front = self.pareto_front()
        sizes = [t.metrics["params"] for t in front]
        rank_zero_info(
            f"CARS generation {len(self.history)}: best accuracy {max(accuracies):.4f}, front of {len(front)} "
            f"(params {min(sizes):.0f} .. {max(sizes):.0f})"
        )

    def _score(self, arch: Arch, accuracy: float) -> Trial:
        previous = self.previous_accuracy.get(_key(arch), 1.0 / self.space.num_classes)
        self.previous_accuracy[_key(arch)] = accuracy
        gain = accuracy - previous
        return Trial(dict(arch), {"accuracy": accuracy, "accuracy_gain": gain, "params": self.costs.params(arch)})

    def _offspring(self, parents: list[Trial]) -> list[Arch]:
        """``population_size`` new architectures by tournament, crossover and mutation (none already pooled)."""
        generator = step_generator(self.seed, len(self.history), "cars/evolve")
        rank = {
            id(parents[i]): r
            for r, front in enumerate(rank_trials(parents, OBJECTIVES, PROTECTIONS[self.protect]))
            for i in front
        }

        def tournament() -> Trial:
            a, b = (parents[i] for i in torch.randint(len(parents), (2,), generator=generator).tolist())
            return a if rank[id(a)] <= rank[id(b)] else b

        taken, children = {_key(a) for a in self.population}, list[Arch]()
        for _ in range(20 * self.population_size):
            if len(children) == self.population_size:
                break
            first, second = tournament(), tournament()
            child = mutate(crossover(first.arch, second.arch, self.choices, generator), self.choices, generator)
            if _key(child) in taken:
                continue
            taken.add(_key(child))
            inherited = [self.previous_accuracy[_key(p.arch)] for p in (first, second)]
            self.previous_accuracy.setdefault(_key(child), statistics.mean(inherited))
            children.append(child)
        return children

    # -------------------------------------------------------------------------------------------------- state
    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["cars"] = self.search_state()

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.load_search_state(checkpoint["cars"])

    def search_state(self) -> dict[str, Any]:
        """Population, pool, previous accuracies and history, as plain JSON values."""
        return {
            "population": [dict(a) for a in self.population],
            "pool": [dict(a) for a in self.pool],
            "previous_accuracy": dict(self.previous_accuracy),
            "history": [[t.to_dict() for t in generation] for generation in self.history],
        }

    def load_search_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`search_state` returned."""
        self.population = [self.space.validate_arch(a) for a in state["population"]]
        self.pool = [self.space.validate_arch(a) for a in state["pool"]]
        self.previous_accuracy = {k: float(v) for k, v in state["previous_accuracy"].items()}
        self.history = [[Trial.from_dict(t) for t in generation] for generation in state["history"]]

    def front_json(self) -> list[dict[str, Any]]:
        """The final Pareto front as ``[{"arch": ..., "metrics": ...}]``, smallest model first."""
        return [t.to_dict() for t in sorted(self.pareto_front(), key=lambda t: t.metrics["params"])]

    @override
    def on_fit_end(self) -> None:
        if getattr(self.trainer, "fast_dev_run", False):  # a smoke test writes no run files, as Lightning's loggers
            return
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir  # collective: ask on every rank
        if self.trainer.is_global_zero and self.history:
            path = atomic_write_text(Path(log_dir) / "pareto_front.json", json.dumps(self.front_json(), indent=2))
            rank_zero_info(f"CARS: Pareto front of {len(self.pareto_front())} architectures written to {path}")

    @override
    def configure_optimizers(self) -> Any:
        weights = [p for p in self.space.parameters() if p.requires_grad and id(p) not in self._alpha_ids]
        optimizer = torch.optim.SGD(weights, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        return [optimizer], [{"scheduler": schedule, "interval": "step"}]

    # ------------------------------------------------------------------------------------ architecture logging
    @override
    def subnet_results(self) -> list[SubnetResult]:
        """The last scored generation (the whole pool): each architecture with its validation accuracy
        (``"val/acc"``) and parameter count (``"params"``), so the logger plots the pool against size."""
        if not self.history:
            return []
        return [
            (dict(t.arch), {"val/acc": t.metrics["accuracy"], "params": t.metrics["params"]}) for t in self.history[-1]
        ]
