"""DARTS-: Robustly Stepping out of Performance Collapse Without Indicators (Chu et al., ICLR 2021).

DARTS's bilevel step with an auxiliary skip connection on every edge,
``edge(x) = sum_k softmax(alpha)_k op_k(x) + beta * skip(x)`` (Sec. 3.2, Eq. 3), whose coefficient ``beta`` decays
from 1 to 0 over the search (linearly; cosine as an option), so the search ends on DARTS's own relaxation. Reference
code: https://github.com/Meituan-AutoML/DARTS- (``beta_decay`` linear by default; on stride-2 edges the auxiliary
skip is a factorised reduction of its own, ``FactorizedReduce(C, C, affine=False)`` in its ``MixedOp``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from lightning.pytorch.utilities import rank_zero_warn
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
        reduction_skip: on stride-2 edges (the DARTS space's reduction cells), whose skip is a factorised reduction
            with weights: ``"own"`` gives the auxiliary skip its own reduction (the reference code); ``"shared"``
            reuses the candidate ``skip_connect``'s, as DARTS- did before this option (checkpoints written then
            load as ``"shared"``). Spaces without stride-2 edges (NAS-Bench-201) are the same either way.
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
        reduction_skip: Literal["own", "shared"] = "own",
        **darts_options: Any,
    ) -> None:
        if beta_decay not in ("linear", "cosine"):
            raise ValueError(f"beta_decay must be 'linear' or 'cosine', got {beta_decay!r}")
        if reduction_skip not in ("own", "shared"):
            raise ValueError(f"reduction_skip must be 'own' or 'shared', got {reduction_skip!r}")
        if isinstance(space, DifferentiableSpace):
            space.set_relaxation(AuxiliarySkip(getattr(space, "ops", ()), beta_init))
            space.use_auxiliary_skips(own=reduction_skip == "own")
        darts_options.setdefault("order", "first")
        super().__init__(space, **darts_options)
        self.beta_init, self.beta_decay, self.reduction_skip = beta_init, beta_decay, reduction_skip

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

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict", {})
        own = any(".auxiliary." in key for key in state)
        if own == self.space.has_auxiliary_skips():
            return
        found: Literal["own", "shared"] = "own" if own else "shared"
        rank_zero_warn(
            f"this DARTS- checkpoint was written with reduction_skip={found!r}"
            f"{'' if own else ' (as every one written before the option)'} and this model was built with "
            f"reduction_skip={self.reduction_skip!r}; loading it as {found!r}, the way it was trained"
        )
        self.space.use_auxiliary_skips(own=own)
        self.reduction_skip = found
        self.hparams["reduction_skip"] = found
