"""The continuous relaxation of a categorical choice of ops (DARTS, Liu et al., 2019, Eq. 2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_nas.ops._registry import build_op
from lightning_nas.ops.darts_ops import PreActivated

__all__ = ["MixedOp"]


class MixedOp(nn.Module):
    """``sum_k w_k * op_k(x)`` over the candidate ops of one edge.

    ``none`` contributes nothing to the sum and is not computed. Ops that start with a ReLU share one
    ``relu(x)``, which the caller may pass in when several edges read the same input. As in the DARTS search
    network, pooling ops are followed by a BatchNorm without affine parameters so their scale matches the convs'.

    Args:
        op_names: names of registered ops, in the order of the weights.
        channels: input and output channels.
        stride: 1, or 2 for edges that read a reduction cell's inputs.
        affine: whether the ops' BatchNorms learn a scale and shift (DARTS search uses ``False``).
        normalize_pools: follow pooling ops by a BatchNorm without affine parameters (the DARTS search network);
            ``False`` keeps pools bare, as the NAS-Bench-201 search cell does.

    Example:
        >>> mixed = MixedOp(["none", "skip_connect", "max_pool_3x3"], channels=4, stride=1)
        >>> x = torch.randn(2, 4, 8, 8)
        >>> out = mixed(x, torch.tensor([0.5, 0.5, 0.0]))
        >>> torch.allclose(out, 0.5 * x)
        True
    """

    def __init__(
        self,
        op_names: Sequence[str],
        channels: int,
        stride: int,
        affine: bool = False,
        *,
        normalize_pools: bool = True,
    ) -> None:
        super().__init__()
        self.op_names = tuple(op_names)
        ops = []
        for name in self.op_names:
            op = build_op(name, channels, stride, affine)
            if normalize_pools and "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        self._computed = [index for index, name in enumerate(self.op_names) if name != "none"]

    def forward(self, x: Tensor, weights: Tensor, relu_x: Tensor | None = None) -> Tensor:
        """Weighted sum of the ops on ``x``.

        Args:
            x: input ``[B, C, H, W]``.
            weights: one weight per op, ``[len(op_names)]``.
            relu_x: ``relu(x)`` if the caller already has it.
        """
        if weights.shape != (len(self.ops),):
            raise ValueError(f"MixedOp over {len(self.ops)} ops got weights of shape {tuple(weights.shape)}")
        out: Tensor | None = None
        for index in self._computed:
            y = self.run_op(index, x, relu_x)
            out = y * weights[index] if out is None else torch.addcmul(out, y, weights[index])
        if out is None:  # every op is "none"
            return self.ops[0](x) * weights[0]
        return out

    def run_op(self, index: int, x: Tensor, relu_x: Tensor | None = None) -> Tensor:
        """Output of the ``index``-th op alone (the discrete view that sampling methods use)."""
        op = self.ops[index]
        if isinstance(op, PreActivated):
            return op.forward_activated(torch.relu(x) if relu_x is None else relu_x)
        return op(x)
