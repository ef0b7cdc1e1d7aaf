"""Every registered op, the registry, and the mixed op."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_nas.ops import DARTS_OPS, MixedOp, build_op, list_ops, register_op


@pytest.mark.parametrize("name", list_ops())
@pytest.mark.parametrize(("stride", "size", "expected"), [(1, 8, 8), (2, 8, 4), (2, 7, 4), (1, 7, 7)])
def test_op_output_shape(name: str, stride: int, size: int, expected: int) -> None:
    op = build_op(name, channels=6, stride=stride, affine=True)
    out = op(torch.randn(2, 6, size, size))
    assert out.shape == (2, 6, expected, expected)


def test_darts_ops_are_registered() -> None:
    assert set(DARTS_OPS) <= set(list_ops())
    assert len(DARTS_OPS) == 8


def test_skip_connect_is_identity_at_stride_one() -> None:
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(build_op("skip_connect", 4, 1)(x), x)


def test_unknown_op_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown op 'sep_conv_9x9'; registered ops: .*sep_conv_3x3"):
        build_op("sep_conv_9x9", 4, 1)
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        build_op("sep_conv_3x3", 4, 3)


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered under the name 'sep_conv_3x3'"):
        register_op("sep_conv_3x3")(lambda channels, stride, affine: nn.Identity())


def test_user_op_usable_in_mixed_op() -> None:
    @register_op("test_scaled_identity")
    def _scaled(channels: int, stride: int, affine: bool) -> nn.Module:
        return nn.AvgPool2d(1, stride=stride)

    mixed = MixedOp(["none", "test_scaled_identity"], channels=3, stride=1)
    x = torch.randn(1, 3, 4, 4)
    # A user op with "pool" in its name is not auto-normalised unless it is named so; this one is not.
    torch.testing.assert_close(mixed(x, torch.tensor([0.3, 0.7])), 0.7 * x)


def test_mixed_op_equals_weighted_sum_of_ops() -> None:
    mixed = MixedOp(DARTS_OPS, channels=4, stride=2).eval()
    x = torch.randn(2, 4, 8, 8)
    weights = torch.softmax(torch.randn(len(DARTS_OPS)), -1)
    expected = sum(w * op(x) for w, op in zip(weights, mixed.ops))
    torch.testing.assert_close(mixed(x, weights), expected)
    # The shared relu(x) gives the same result.
    torch.testing.assert_close(mixed(x, weights, relu_x=torch.relu(x)), expected)
    with pytest.raises(ValueError, match="over 8 ops got weights of shape"):
        mixed(x, weights[:3])
