"""PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture Search (Xu et al., ICLR 2020).

DARTS's bilevel step on a supernet whose mixed ops see ``1/K`` of each edge's channels, the rest bypassing them and
the two parts shuffled together (Sec. 3.1, Eq. 4), and whose edges into a node are weighted by a softmax of
edge-normalisation parameters ``beta`` (Sec. 3.2, Eq. 5); genotypes rank edges by ``softmax(alpha) * softmax(beta)``.
Reference code: https://github.com/yuhuixu1993/PC-DARTS (``model_search.py``, ``train_search.py``).
"""

from __future__ import annotations

from typing import Any

from lightning_nas.methods.darts import DARTS
from lightning_nas.ops.relaxation import EdgeNormalization
from lightning_nas.spaces.base import DifferentiableSpace

__all__ = ["PCDARTS"]


class PCDARTS(DARTS):
    """DARTS with partial channel connections and edge normalisation.

    Args:
        space: a space with per-cell alphas; its mixed ops are replaced by partial-channel ones (fresh weights).
        partial_channels: ``K``, the inverse channel proportion through the mixed ops (4 on CIFAR-10; every edge's
            channels must divide by it).
        darts_options: the options of :class:`~lightning_nas.methods.DARTS` (``order`` defaults to ``"first"``,
            the paper's setting).

    Example:
        >>> from lightning_nas.spaces import NasBench201Space
        >>> model = PCDARTS(NasBench201Space(in_channels=1, channels=4, cells_per_stage=1), partial_channels=2)
        >>> [tuple(p.shape) for p in model.space.arch_parameters()]
        [(6, 5), (6,)]
    """

    def __init__(self, space: DifferentiableSpace, *, partial_channels: int = 4, **darts_options: Any) -> None:
        if partial_channels < 1:
            raise ValueError(f"partial_channels must be >= 1, got {partial_channels}")
        if isinstance(space, DifferentiableSpace):
            space.use_partial_channels(partial_channels)
            space.set_relaxation(EdgeNormalization(space.edge_groups()))
        darts_options.setdefault("order", "first")
        super().__init__(space, **darts_options)
        self.partial_channels = partial_channels
