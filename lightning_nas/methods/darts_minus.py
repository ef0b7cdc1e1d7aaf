"""DARTS-: Robustly Stepping out of Performance Collapse Without Indicators (Chu et al., ICLR 2021).

DARTS's bilevel step with an auxiliary skip connection on every edge,
``edge(x) = sum_k softmax(alpha)_k op_k(x) + beta * skip(x)`` (Sec. 3.2, Eq. 3), whose coefficient ``beta`` decays
from 1 to 0 over the search (linearly; cosine as an option), so the search ends on DARTS's own relaxation. Reference
code: https://github.com/Meituan-AutoML/DARTS- (``beta_decay`` linear by default).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from typing_extensions import override

from lightning_nas.methods.darts import DARTS
from lightning_nas.ops.relaxation import AuxiliarySkip
from lightning_nas.spaces.base import DifferentiableSpace

__all__ = ["DARTSMinus"]


class DARTSMinus(DARTS):
    """DARTS with a decaying auxiliary skip connection on each edge.

    Args:
        space: a space with per-cell alphas whose ops include ``skip_connect``.
        beta_init: the skip coefficient at the start (1).
        beta_decay: ``"linear"``: ``beta = beta_init * (1 - t)``; ``"cosine"``: ``beta_init * (1 + cos(pi t)) / 2``,
            with ``t`` the fraction of training steps done.
        darts_options: the options of :class:`~lightning_nas.methods.DARTS` (``order`` defaults to ``"first"``,
            the paper's setting).

    Example:
        >>> from lightning_nas.spaces import NasBench201Space
        >>> model = DARTSMinus(NasBench201Space(in_channels=1, channels=4, cells_per_stage=1))
        >>> model.skip_coefficient(0.0), model.skip_coefficient(0.25), model.skip_coefficient(1.0)
        (1.0, 0.75, 0.0)
    """

    def __init__(
        self,
        space: DifferentiableSpace,
        *,
        beta_init: float = 1.0,
        beta_decay: Literal["linear", "cosine"] = "linear",
        **darts_options: Any,
    ) -> None:
        if beta_decay not in ("linear", "cosine"):
            raise ValueError(f"beta_decay must be 'linear' or 'cosine', got {beta_decay!r}")
        if isinstance(space, DifferentiableSpace):
            space.set_relaxation(AuxiliarySkip(getattr(space, "ops", ()), beta_init))
        darts_options.setdefault("order", "first")
        super().__init__(space, **darts_options)
        self.beta_init, self.beta_decay = beta_init, beta_decay

    def skip_coefficient(self, progress: float) -> float:
        """``beta`` after a fraction ``progress`` of the search."""
        if self.beta_decay == "cosine":
            return self.beta_init * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.beta_init * (1.0 - progress)

    @override
    def schedule_relaxation(self) -> None:
        relaxation = self.space.relaxation
        assert isinstance(relaxation, AuxiliarySkip)
        relaxation.beta = self.skip_coefficient(self.search_progress())
        self.log("search/skip_beta", relaxation.beta)
