"""Elastic layers: weights allocated at the largest size, run at an active size, exported to static layers.

Weight sharing follows Once-for-All (Cai et al., ICLR 2020, Sec. 3.2):

* **width** -- a layer running ``c`` of its ``C`` channels uses the first ``c`` (``weight[:c]``); channels are
  sorted by importance beforehand (:meth:`ElasticInvertedResidual.reorganize_channels`), so the first ``c`` are the
  most important ones. Batch-norm statistics and affine parameters are sliced with them.
* **kernel size** -- a ``k x k`` depthwise kernel is the centre of the next larger kernel passed through a learned
  ``k^2 x k^2`` kernel-transformation matrix, one matrix per pair of sizes per layer, shared by all channels
  (``7x7 -> 5x5`` uses a 25x25 matrix, ``5x5 -> 3x3`` a 9x9 one). The matrices start as identities.

No copy in the hot path: channel slices are basic-indexing views (``weight[:c]``, ``weight[:, :c]``,
``running_mean[:c]``) passed straight to ``F.conv2d`` / ``F.batch_norm``, and the largest size passes the
parameters themselves. Only a smaller kernel is computed (a product of two weight-sized tensors, no activations).
Every layer has ``to_static(...)``, returning plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` modules with copied weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from lightning_nas.ops.mobile import (
    Activation,
    InvertedResidual,
    SqueezeExcite,
    activation,
    conv_bn,
    make_divisible,
    squeeze_channels,
)

__all__ = [
    "ElasticBatchNorm2d",
    "ElasticDepthwiseConv2d",
    "ElasticInvertedResidual",
    "ElasticPointwiseConv2d",
    "ElasticSqueezeExcite",
]


def _copy(tensor: Tensor) -> nn.Parameter:
    return nn.Parameter(tensor.detach().clone())


class ElasticPointwiseConv2d(nn.Module):
    """A ``1x1`` convolution that runs on the first ``c_in`` input and first ``c_out`` output channels.

    The input width is read from ``x``; the output width is an argument.

    Args:
        in_channels: largest input width.
        out_channels: largest output width.
        bias: learn a bias.

    Example:
        >>> conv = ElasticPointwiseConv2d(8, 16)
        >>> conv(torch.randn(2, 6, 4, 4), out_channels=12).shape
        torch.Size([2, 12, 4, 4])
        >>> y = conv(torch.randn(2, 6, 4, 4), out_channels=12)
        >>> static = conv.to_static(6, 12)
        >>> x = torch.randn(2, 6, 4, 4)
        >>> torch.allclose(conv(x, 12), static(x))
        True
    """

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        reference = nn.Conv2d(in_channels, out_channels, 1, bias=bias)  # PyTorch's default initialisation
        self.weight = reference.weight
        self.bias = reference.bias

    def active_weight(self, in_channels: int, out_channels: int) -> Tensor:
        """``weight[:out_channels, :in_channels]``, a view (the parameter itself at full size)."""
        if in_channels == self.in_channels and out_channels == self.out_channels:
            return self.weight
        return self.weight[:out_channels, :in_channels]

    def forward(self, x: Tensor, out_channels: int) -> Tensor:
        bias = None if self.bias is None else self.bias[:out_channels]
        return F.conv2d(x, self.active_weight(x.shape[1], out_channels), bias)

    def to_static(self, in_channels: int, out_channels: int) -> nn.Conv2d:
        """An ``nn.Conv2d`` holding a copy of the active weights."""
        conv = nn.Conv2d(in_channels, out_channels, 1, bias=self.bias is not None)
        conv.weight = _copy(self.active_weight(in_channels, out_channels))
        if self.bias is not None:
            conv.bias = _copy(self.bias[:out_channels])
        return conv.to(self.weight.device)


class ElasticDepthwiseConv2d(nn.Module):
    """A depthwise convolution with elastic channels and elastic kernel size via kernel-transformation matrices.

    The ``k x k`` kernel is ``T_{k'->k}(centre_k(W_{k'}))`` where ``k'`` is the next larger size and ``W_{kmax}`` the
    stored weight; ``T`` multiplies each channel's flattened ``k^2`` kernel by a ``k^2 x k^2`` matrix
    (``w @ M.T``, as ``F.linear``) shared by all channels of the layer (Cai et al. 2020, Sec. 3.2, Fig. 3).

    Args:
        channels: largest number of channels.
        kernel_sizes: the odd kernel sizes offered, e.g. ``(3, 5, 7)``.
        stride: stride of the convolution; padding is ``k // 2``.

    Example:
        >>> conv = ElasticDepthwiseConv2d(8, (3, 5, 7))
        >>> sorted(conv.transforms), tuple(conv.transforms["7to5"].shape), tuple(conv.transforms["5to3"].shape)
        (['5to3', '7to5'], (25, 25), (9, 9))
        >>> conv.kernel_weight(6, 3).shape
        torch.Size([6, 1, 3, 3])
    """

    def __init__(self, channels: int, kernel_sizes: Sequence[int], stride: int = 1) -> None:
        super().__init__()
        sizes = tuple(sorted(set(kernel_sizes)))
        if not sizes or any(k < 1 or k % 2 == 0 for k in sizes):
            raise ValueError(f"kernel sizes must be odd positive integers, got {list(kernel_sizes)}")
        self.channels, self.kernel_sizes, self.stride = channels, sizes, stride
        self.weight = nn.Conv2d(channels, channels, sizes[-1], groups=channels, bias=False).weight
        self.transforms = nn.ParameterDict(
            {f"{large}to{small}": nn.Parameter(torch.eye(small * small)) for small, large in zip(sizes, sizes[1:])}
        )

    def kernel_weight(self, channels: int, kernel_size: int) -> Tensor:
        """The ``[channels, 1, kernel_size, kernel_size]`` kernel of the first ``channels`` channels."""
        if kernel_size not in self.kernel_sizes:
            raise ValueError(f"kernel size {kernel_size} is not offered; valid sizes: {list(self.kernel_sizes)}")
        weight = self.weight if channels == self.channels else self.weight[:channels]
        for large, small in zip(self.kernel_sizes[::-1], self.kernel_sizes[-2::-1]):
            if large == kernel_size:
                break
            start = (large - small) // 2
            centre = weight[:, :, start : start + small, start : start + small].reshape(channels, small * small)
            weight = F.linear(centre, self.transforms[f"{large}to{small}"]).view(channels, 1, small, small)
        return weight

    def forward(self, x: Tensor, kernel_size: int) -> Tensor:
        channels = x.shape[1]
        weight = self.kernel_weight(channels, kernel_size)
        return F.conv2d(x, weight, None, self.stride, kernel_size // 2, 1, channels)

    def to_static(self, channels: int, kernel_size: int) -> nn.Conv2d:
        """An ``nn.Conv2d`` (depthwise) holding the transformed kernel."""
        conv = nn.Conv2d(channels, channels, kernel_size, self.stride, kernel_size // 2, groups=channels, bias=False)
        conv.weight = _copy(self.kernel_weight(channels, kernel_size))
        return conv.to(self.weight.device)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over the first ``c`` channels of its input, statistics and affine parameters sliced alike.

    At full width it is exactly ``nn.BatchNorm2d``. In training mode the running statistics of the active channels
    are updated in place through the slice views; the others are left alone.

    Example:
        >>> bn = ElasticBatchNorm2d(8)
        >>> _ = bn(torch.randn(4, 5, 3, 3) + 2.0)
        >>> bool((bn.running_mean[:5] > 0).all()), bool((bn.running_mean[5:] == 0).all())
        (True, True)
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        if channels == self.num_features:
            return super().forward(x)
        assert self.running_mean is not None
        assert self.running_var is not None
        factor = 0.0
        tracking = self.track_running_stats or not self.training  # not tracking in training: batch statistics only
        if self.training and tracking:
            tracked = self.num_batches_tracked
            assert tracked is not None
            tracked.add_(1)
            factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
        return F.batch_norm(
            x,
            self.running_mean[:channels] if tracking else None,
            self.running_var[:channels] if tracking else None,
            self.weight[:channels],
            self.bias[:channels],
            self.training,
            factor,
            self.eps,
        )

    def to_static(self, channels: int) -> nn.BatchNorm2d:
        """An ``nn.BatchNorm2d`` holding copies of the first ``channels`` parameters and statistics."""
        assert self.running_mean is not None
        assert self.running_var is not None
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum).to(self.weight.device)
        with torch.no_grad():
            bn.weight.copy_(self.weight[:channels])
            bn.bias.copy_(self.bias[:channels])
            bn.running_mean.copy_(self.running_mean[:channels])  # type: ignore[union-attr]
            bn.running_var.copy_(self.running_var[:channels])  # type: ignore[union-attr]
            if bn.num_batches_tracked is not None and self.num_batches_tracked is not None:
                bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class ElasticSqueezeExcite(nn.Module):
    """:class:`~lightning_nas.ops.mobile.SqueezeExcite` whose width follows its input's channel count.

    ``c`` active channels use a hidden width of ``squeeze_channels(c)`` and the matching weight slices.

    Example:
        >>> se = ElasticSqueezeExcite(32)
        >>> x = torch.randn(2, 16, 4, 4)
        >>> torch.allclose(se(x), se.to_static(16)(x))
        True
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.reduce = ElasticPointwiseConv2d(channels, squeeze_channels(channels), bias=True)
        self.expand = ElasticPointwiseConv2d(squeeze_channels(channels), channels, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        gate = F.relu(self.reduce(x.mean((2, 3), keepdim=True), squeeze_channels(channels)))
        return x * F.hardsigmoid(self.expand(gate, channels))

    def to_static(self, channels: int) -> SqueezeExcite:
        """A :class:`~lightning_nas.ops.mobile.SqueezeExcite` of ``channels`` channels with copied weights."""
        hidden = squeeze_channels(channels)
        se = SqueezeExcite(channels, hidden)
        se.reduce = self.reduce.to_static(channels, hidden)
        se.expand = self.expand.to_static(hidden, channels)
        return se


class ElasticInvertedResidual(nn.Module):
    """A MobileNetV3 block with elastic kernel size and expand ratio (OFA's ``DynamicMBConvLayer``).

    The hidden width for expand ratio ``e`` is ``make_divisible(in_channels * e)``. Input and output widths are
    fixed; the residual is used when ``stride == 1`` and ``in_channels == out_channels``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_sizes: depthwise kernel sizes offered.
        expand_ratios: expand ratios offered; ``(1,)`` builds a block without the expanding ``1x1`` convolution.
        stride: stride of the depthwise convolution.
        act: ``"relu"`` or ``"hswish"``.
        use_se: add squeeze-excite after the depthwise convolution.

    Example:
        >>> block = ElasticInvertedResidual(8, 8, (3, 5), (3, 6), stride=1, act="hswish", use_se=True)
        >>> block.hidden_channels(3), block.hidden_channels(6)
        (24, 48)
        >>> block.active_kernel, block.active_expand = 3, 3
        >>> x = torch.randn(2, 8, 6, 6)
        >>> _ = block.eval()
        >>> torch.allclose(block(x), block.to_static().eval()(x), atol=1e-6)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: Sequence[int],
        expand_ratios: Sequence[int],
        *,
        stride: int,
        act: Activation,
        use_se: bool,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.kernel_sizes, self.expand_ratios = tuple(sorted(kernel_sizes)), tuple(sorted(expand_ratios))
        self.act, self.use_se, self.residual = act, use_se, stride == 1 and in_channels == out_channels
        hidden = self.hidden_channels(self.expand_ratios[-1])
        self.expand_conv: ElasticPointwiseConv2d | None = None
        self.expand_bn: ElasticBatchNorm2d | None = None
        if self.expand_ratios != (1,):
            self.expand_conv = ElasticPointwiseConv2d(in_channels, hidden)
            self.expand_bn = ElasticBatchNorm2d(hidden, bn_eps, bn_momentum)
        self.depthwise = ElasticDepthwiseConv2d(hidden, self.kernel_sizes, stride)
        self.depthwise_bn = ElasticBatchNorm2d(hidden, bn_eps, bn_momentum)
        self.squeeze_excite = ElasticSqueezeExcite(hidden) if use_se else None
        self.project = ElasticPointwiseConv2d(hidden, out_channels)
        self.project_bn = ElasticBatchNorm2d(out_channels, bn_eps, bn_momentum)
        self.activation = activation(act)
        self.active_kernel, self.active_expand = self.kernel_sizes[-1], self.expand_ratios[-1]

    def latency_state(self) -> dict[str, int]:
        """What the active setting changes in this block's compute: a latency table times each setting apart."""
        return {"kernel": self.active_kernel, "expand": self.active_expand}

    def hidden_channels(self, expand_ratio: int) -> int:
        """Hidden width of the block at ``expand_ratio``."""
        return self.in_channels if expand_ratio == 1 else make_divisible(self.in_channels * expand_ratio)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.hidden_channels(self.active_expand)
        out = x
        if self.expand_conv is not None and self.expand_bn is not None:
            out = self.activation(self.expand_bn(self.expand_conv(x, hidden)))
        out = self.activation(self.depthwise_bn(self.depthwise(out, self.active_kernel)))
        if self.squeeze_excite is not None:
            out = self.squeeze_excite(out)
        out = self.project_bn(self.project(out, self.out_channels))
        return out + x if self.residual else out

    def to_static(self, kernel_size: int | None = None, expand_ratio: int | None = None) -> InvertedResidual:
        """The block at ``kernel_size`` and ``expand_ratio`` (default: the active ones) with copied weights."""
        kernel = self.active_kernel if kernel_size is None else kernel_size
        hidden = self.hidden_channels(self.active_expand if expand_ratio is None else expand_ratio)
        expand = None
        if self.expand_conv is not None and self.expand_bn is not None:
            conv = self.expand_conv.to_static(self.in_channels, hidden)
            expand = conv_bn(conv, self.expand_bn.to_static(hidden), self.act)
        depthwise = conv_bn(self.depthwise.to_static(hidden, kernel), self.depthwise_bn.to_static(hidden), self.act)
        se = None if self.squeeze_excite is None else self.squeeze_excite.to_static(hidden)
        conv = self.project.to_static(hidden, self.out_channels)
        project = conv_bn(conv, self.project_bn.to_static(self.out_channels), None)
        return InvertedResidual(expand, depthwise, se, project, residual=self.residual)

    @torch.no_grad()
    def reorganize_channels(self, keep_within: Sequence[int] = ()) -> None:
        """Sort the hidden channels by importance, most important first, without changing the block's function.

        A hidden channel's importance is the L1 norm of its column of the projection weight (OFA's
        ``re_organize_middle_weights``); the squeeze-excite's hidden units are then sorted by the L1 norm of their
        column of its expanding weight. Every weight and statistic indexed by those channels is permuted alike.

        Args:
            keep_within: expand ratios already trained at smaller widths: a channel among the first
                ``hidden_channels(e)`` stays among them (channels are sorted inside each nested band).
        """
        if self.expand_conv is None or self.expand_bn is None:
            return  # expand ratio 1: the hidden width is the input width, which is not elastic
        order = _banded_order(self.project.weight.abs().sum((0, 2, 3)), [self.hidden_channels(e) for e in keep_within])
        _permute(self.expand_conv.weight, order, 0)
        for bn in (self.expand_bn, self.depthwise_bn):
            for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                assert tensor is not None
                _permute(tensor, order, 0)
        _permute(self.depthwise.weight, order, 0)
        _permute(self.project.weight, order, 1)
        se = self.squeeze_excite
        if se is None:
            return
        assert se.expand.bias is not None
        assert se.reduce.bias is not None
        _permute(se.reduce.weight, order, 1)
        _permute(se.expand.weight, order, 0)
        _permute(se.expand.bias, order, 0)
        bands = [squeeze_channels(self.hidden_channels(e)) for e in keep_within]
        squeeze_order = _banded_order(se.expand.weight.abs().sum((0, 2, 3)), bands)
        _permute(se.expand.weight, squeeze_order, 1)
        _permute(se.reduce.weight, squeeze_order, 0)
        _permute(se.reduce.bias, squeeze_order, 0)


def _banded_order(importance: Tensor, bounds: Sequence[int]) -> Tensor:
    """Indices sorting ``importance`` in descending order inside each band ``[b_i, b_{i+1})`` of ``bounds``."""
    edges = sorted({0, len(importance), *(b for b in bounds if 0 < b < len(importance))})
    parts = [
        start + torch.sort(importance[start:end], descending=True, stable=True).indices
        for start, end in zip(edges, edges[1:])
    ]
    return torch.cat(parts)


def _permute(tensor: Tensor, order: Tensor, dim: int) -> None:
    tensor.copy_(tensor.index_select(dim, order.to(tensor.device)))
