"""GDAS: Searching for a Robust Neural Architecture in Four GPU Hours (Dong & Yang, CVPR 2019).

DARTS's bilevel step with a sampled one-path supernet: every forward draws one op per edge by Gumbel-max and runs
only that op; the architecture gradient flows through the straight-through estimator
``h = onehot(argmax(alpha + g)) - sg(p) + p``, ``p = softmax((alpha + g) / tau)`` (Sec. 3.2, Eq. 3-5), with the
temperature ``tau`` annealed linearly from 10 to 0.1 over the epochs (Sec. 4.1). Reference code: ``GDAS`` in
https://github.com/D-X-Y/AutoDL-Projects (``exps/NATS-algos/search-cell.py`` at
``076f9c2d41dc888b8087c266261d2094c8739340``).
"""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from lightning_nas.methods.darts import DARTS
from lightning_nas.ops.relaxation import GumbelRelaxation
from lightning_nas.spaces.base import DifferentiableSpace

__all__ = ["GDAS"]


class GDAS(DARTS):
    """DARTS with a Gumbel-max one-path forward and a straight-through architecture gradient.

    Args:
        space: a space with per-cell alphas (:class:`~lightning_nas.spaces.DartsCellSpace`,
            :class:`~lightning_nas.spaces.NasBench201Space`).
        tau_max: temperature of the first epoch (10).
        tau_min: temperature of the last epoch (0.1).
        darts_options: the options of :class:`~lightning_nas.methods.DARTS` (``order`` defaults to ``"first"``,
            as GDAS uses; ``seed`` seeds the Gumbel noise).

    Example:
        >>> from lightning_nas.spaces import NasBench201Space
        >>> model = GDAS(NasBench201Space(in_channels=1, channels=4, cells_per_stage=1))
        >>> model.temperature(epoch=0, max_epochs=5), round(model.temperature(epoch=4, max_epochs=5), 6)
        (10.0, 0.1)
    """

    def __init__(
        self, space: DifferentiableSpace, *, tau_max: float = 10.0, tau_min: float = 0.1, **darts_options: Any
    ) -> None:
        if not 0 < tau_min <= tau_max:
            raise ValueError(f"need 0 < tau_min <= tau_max, got {tau_min=}, {tau_max=}")
        if isinstance(space, DifferentiableSpace):
            space.set_relaxation(GumbelRelaxation(tau_max))
        darts_options.setdefault("order", "first")
        super().__init__(space, **darts_options)
        self.tau_max, self.tau_min = tau_max, tau_min

    @property
    def relaxation(self) -> GumbelRelaxation:
        """The space's Gumbel relaxation."""
        relaxation = self.space.relaxation
        assert isinstance(relaxation, GumbelRelaxation)
        return relaxation

    def temperature(self, epoch: int, max_epochs: int) -> float:
        """``tau_max - (tau_max - tau_min) * epoch / (max_epochs - 1)``: linear from ``tau_max`` to ``tau_min``."""
        fraction = min(1.0, epoch / (max_epochs - 1)) if max_epochs > 1 else 1.0
        return self.tau_max - (self.tau_max - self.tau_min) * fraction

    @override
    def schedule_relaxation(self) -> None:
        max_epochs = self.trainer.max_epochs
        if max_epochs is None or max_epochs < 1:  # no epoch budget: anneal over the step budget instead
            self.relaxation.tau = self.tau_max - (self.tau_max - self.tau_min) * self.search_progress()
        else:
            self.relaxation.tau = self.temperature(self.current_epoch, max_epochs)
        self.log("search/tau", self.relaxation.tau)
