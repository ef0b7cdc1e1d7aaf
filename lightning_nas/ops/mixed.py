"""The continuous relaxation of a categorical choice of ops (DARTS, Liu et al., 2019, Eq. 2) and its partial-channel
variant (PC-DARTS, Xu et al., ICLR 2020, Sec. 3.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_nas.ops._registry import build_op
from lightning_nas.ops.darts_ops import PreActivated

__all__ = ["MixedOp", "PartialChannelMixedOp", "channel_shuffle"]


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
        self.channels, self.stride, self.affine, self.normalize_pools = channels, stride, affine, normalize_pools
        ops = []
        for name in self.op_names:
            op = build_op(name, channels, stride, affine)
            if normalize_pools and "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        self._computed = [index for index, name in enumerate(self.op_names) if name != "none"]
        self.auxiliary: nn.Module | None = None

    def add_auxiliary_skip(self) -> None:
        """Give this edge its own auxiliary skip (DARTS-) when its ``skip_connect`` has weights.

        A stride-2 skip is a factorised reduction with convolutions; the auxiliary path gets a separate one, as in
        the DARTS- reference code. A stride-1 skip is the identity, which the auxiliary path shares with the
        candidate: the same function, no parameters.
        """
        skip = self.ops[_skip_index(self.op_names)]
        if self.auxiliary is None and any(True for _ in skip.parameters()):
            self.auxiliary = build_op("skip_connect", self.channels, self.stride, self.affine)

    def forward(self, x: Tensor, weights: Tensor, relu_x: Tensor | None = None, chosen: int | None = None) -> Tensor:
        """Weighted sum of the ops on ``x``.

        Args:
            x: input ``[B, C, H, W]``.
            weights: one weight per op, ``[len(op_names)]``.
            relu_x: ``relu(x)`` if the caller already has it.
            chosen: run only this op (the one-path forward of GDAS, whose other weights are zero):
                ``weights[chosen] * op_chosen(x) + sum_{j != chosen} weights[j]``. The added weights are zeros in
                value; as in GDAS's reference forward they carry the gradient ``dL/dw_j = sum(dL/d out)`` to every
                op's weight, so the straight-through gradient reaches each architecture parameter through all of
                them, not only through the sampled op. ``None`` runs every op but ``none``.

        ``weights`` may carry one more entry, the coefficient ``beta`` of an auxiliary skip (DARTS-): the edge adds
        ``beta * auxiliary(x)`` when it has its own auxiliary (:meth:`add_auxiliary_skip`), and otherwise adds
        ``beta`` to the weight of its ``skip_connect`` op (the identity on stride-1 edges).
        """
        if weights.shape == (len(self.ops) + 1,) and chosen is None:
            weights, beta = weights[:-1], weights[-1]
            if self.auxiliary is not None:
                return self.forward(x, weights, relu_x) + beta * _run(self.auxiliary, x, relu_x)
            skip = _skip_index(self.op_names)
            weights = torch.cat([weights[:skip], (weights[skip] + beta).unsqueeze(0), weights[skip + 1 :]])
        if weights.shape != (len(self.ops),):
            raise ValueError(f"MixedOp over {len(self.ops)} ops got weights of shape {tuple(weights.shape)}")
        if chosen is not None:
            others = torch.cat([weights[:chosen], weights[chosen + 1 :]])
            return self._apply_op(chosen, x, relu_x) * weights[chosen] + others.sum()
        out: Tensor | None = None
        for index in self._computed:
            y = self._apply_op(index, x, relu_x)
            out = y * weights[index] if out is None else torch.addcmul(out, y, weights[index])
        if out is None:  # every op is "none"
            return self.ops[0](x) * weights[0]
        return out

    def run_op(self, index: int, x: Tensor, relu_x: Tensor | None = None) -> Tensor:
        """Output of the ``index``-th op alone (the discrete view that sampling methods use)."""
        return self._apply_op(index, x, relu_x)

    def _apply_op(self, index: int, x: Tensor, relu_x: Tensor | None) -> Tensor:
        return _run(self.ops[index], x, relu_x)


def _run(op: nn.Module, x: Tensor, relu_x: Tensor | None) -> Tensor:
    """``op(x)``, reusing ``relu_x`` for ops that start with a ReLU."""
    if isinstance(op, PreActivated):
        return op.forward_activated(torch.relu(x) if relu_x is None else relu_x)
    return op(x)


def _skip_index(op_names: Sequence[str]) -> int:
    if "skip_connect" not in op_names:
        raise ValueError(f"an auxiliary skip needs 'skip_connect' among the ops; got {list(op_names)}")
    return list(op_names).index("skip_connect")


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave ``groups`` equal channel groups (ShuffleNet; PC-DARTS's ``channel_shuffle``).

    Channel ``g * (C // groups) + i`` moves to ``i * groups + g``.

    Example:
        >>> channel_shuffle(torch.arange(6.0).view(1, 6, 1, 1), 2).flatten().tolist()
        [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    """
    batch, channels, height, width = x.shape
    if channels % groups:
        raise ValueError(f"channel_shuffle of {channels} channels into {groups} groups: not divisible")
    return (
        x.view(batch, groups, channels // groups, height, width).transpose(1, 2).reshape(batch, channels, height, width)
    )


class PartialChannelMixedOp(MixedOp):
    """A :class:`MixedOp` over the first ``1/k`` of the channels; the rest bypass it (PC-DARTS, Sec. 3.1, Eq. 4).

    ``out = shuffle_k(concat(sum_k w_k op_k(x[:C/k]), s * bypass(x[C/k:])))`` where ``bypass`` is the identity
    (a 2x2 max pool on stride-2 edges, as in the reference code) and ``s = sum_k w_k`` is the edge's total weight:
    1 under a softmax, the edge-normalisation weight ``beta_e`` when the weights are ``softmax(alpha) * beta_e``
    (the reference code multiplies the whole edge output, bypass included, by ``beta_e``).

    Args:
        op_names, channels, stride, affine, normalize_pools: as in :class:`MixedOp` (the ops see ``channels // k``).
        k: the channel proportion ``1/k`` (4 on CIFAR-10 in the paper).

    Example:
        >>> op = PartialChannelMixedOp(["none", "skip_connect"], channels=8, stride=1, k=4)
        >>> x = torch.randn(2, 8, 4, 4)
        >>> torch.allclose(op(x, torch.tensor([0.0, 1.0])), channel_shuffle(x, 4))
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
        k: int = 4,
    ) -> None:
        if k < 1 or channels % k:
            raise ValueError(f"partial channels need k >= 1 dividing channels; got {k=} for {channels} channels")
        super().__init__(op_names, channels // k, stride, affine, normalize_pools=normalize_pools)
        self.channels, self.k = channels, k
        self.bypass = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()

    @classmethod
    def like(cls, mixed: MixedOp, k: int) -> PartialChannelMixedOp:
        """A partial-channel op with the candidate ops and settings of ``mixed`` (fresh weights)."""
        return cls(
            mixed.op_names, mixed.channels, mixed.stride, mixed.affine, normalize_pools=mixed.normalize_pools, k=k
        )

    def forward(self, x: Tensor, weights: Tensor, relu_x: Tensor | None = None, chosen: int | None = None) -> Tensor:
        part = self.channels // self.k
        relu_part = None if relu_x is None else relu_x[:, :part]
        mixed = super().forward(x[:, :part], weights, relu_part, chosen)
        return self._join(mixed, x[:, part:] * weights.sum())

    def run_op(self, index: int, x: Tensor, relu_x: Tensor | None = None) -> Tensor:
        part = self.channels // self.k
        relu_part = None if relu_x is None else relu_x[:, :part]
        return self._join(self._apply_op(index, x[:, :part], relu_part), x[:, part:])

    def _join(self, mixed: Tensor, rest: Tensor) -> Tensor:
        return channel_shuffle(torch.cat([mixed, self.bypass(rest)], dim=1), self.k)
