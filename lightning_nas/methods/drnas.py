"""DrNAS: Dirichlet Neural Architecture Search (Chen et al., ICLR 2021).

DARTS's bilevel step with op weights sampled from ``Dir(elu(alpha) + 1)`` in every forward, the architecture
gradient passing through the sample by the pathwise (reparameterised) gradient (Sec. 2.2), and the architecture
loss regularised by the KL divergence of that Dirichlet from a prior ``Dir(prior)`` (Sec. 2.3, Eq. 3; the
reference code's ``--reg_type kl``). The architecture is the argmax of the Dirichlet mean. The paper's progressive
channel and operation pruning on the DARTS space is not part of this module (train with a
:class:`~lightning_nas.methods.PCDARTS`-style partial space instead). Reference code:
https://github.com/xiangning-chen/DrNAS (``201-space/`` and ``DARTS-space/``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from lightning_nas.methods.darts import DARTS
from lightning_nas.ops.relaxation import DirichletRelaxation
from lightning_nas.spaces.base import DifferentiableSpace

__all__ = ["DrNAS", "dirichlet_kl"]


def dirichlet_kl(concentration: Tensor, prior: float) -> Tensor:
    """``sum over rows of KL(Dir(concentration_row) || Dir(prior * 1))``, in closed form.

    Example:
        >>> float(dirichlet_kl(torch.ones(3, 4), prior=1.0))
        0.0
    """
    q = torch.distributions.Dirichlet(concentration)
    p = torch.distributions.Dirichlet(torch.full_like(concentration, prior))
    return torch.distributions.kl_divergence(q, p).sum()


class DrNAS(DARTS):
    """DARTS with a Dirichlet architecture distribution, pathwise gradients and a KL regulariser.

    Args:
        space: a space with per-cell alphas.
        reg_scale: ``lambda``, the weight of the KL term in the architecture loss (1e-3).
        prior: the prior's concentration (1: uniform over the simplex).
        darts_options: the options of :class:`~lightning_nas.methods.DARTS` (``order`` defaults to ``"first"``;
            ``seed`` seeds the Dirichlet samples).

    Example:
        >>> from lightning_nas.spaces import NasBench201Space
        >>> model = DrNAS(NasBench201Space(in_channels=1, channels=4, cells_per_stage=1))
        >>> round(float(model.regularizer()), 6)
        0.0
    """

    def __init__(
        self, space: DifferentiableSpace, *, reg_scale: float = 1e-3, prior: float = 1.0, **darts_options: Any
    ) -> None:
        if reg_scale < 0 or prior <= 0:
            raise ValueError(f"need reg_scale >= 0 and prior > 0, got {reg_scale=}, {prior=}")
        if isinstance(space, DifferentiableSpace):
            space.set_relaxation(DirichletRelaxation())
        darts_options.setdefault("order", "first")
        super().__init__(space, **darts_options)
        self.reg_scale, self.prior = reg_scale, prior

    def regularizer(self) -> Tensor:
        """``lambda * sum_cells KL(Dir(elu(alpha) + 1) || Dir(prior))``."""
        terms = [
            dirichlet_kl(DirichletRelaxation.concentration(alpha.float()), self.prior)
            for alpha in self.space.alphas().values()
        ]
        return self.reg_scale * torch.stack(terms).sum()

    @override
    def architecture_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return super().architecture_loss(logits, targets) + self.regularizer()
