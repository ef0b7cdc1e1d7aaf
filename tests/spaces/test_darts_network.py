"""The evaluation network built from a genotype."""

from __future__ import annotations

import pytest
import torch

from lightning_nas.arch import Genotype
from lightning_nas.spaces import DARTS_V2, DartsNetwork, drop_path


def test_darts_v2_has_the_papers_parameter_count() -> None:
    # DARTS paper, Table 1: DARTS (second order) on CIFAR-10 has 3.3M parameters (C=36, 20 cells, auxiliary
    # head not counted, as in the reference code's count_parameters_in_MB).
    net = DartsNetwork(DARTS_V2, in_channels=3, num_classes=10, channels=36, layers=20, auxiliary=True)
    assert round(net.num_parameters() / 1e6, 1) == 3.3
    assert net.num_parameters(include_auxiliary=True) > net.num_parameters()


@pytest.mark.parametrize(("size", "channels"), [(32, 3), (28, 1)])
def test_forward_shapes_and_auxiliary_only_in_training(size: int, channels: int) -> None:
    net = DartsNetwork(DARTS_V2, in_channels=channels, num_classes=7, channels=4, layers=5)
    logits, aux = net.train()(torch.randn(2, channels, size, size))
    assert logits.shape == aux.shape == (2, 7)  # type: ignore[union-attr]
    logits, aux = net.eval()(torch.randn(2, channels, size, size))
    assert aux is None


def test_concat_sets_output_width() -> None:
    narrow = Genotype.from_json({**DARTS_V2.to_json(), "normal_concat": [4, 5]})
    # 4 cells: reductions at 1 and 2 double the width twice, so the last (normal) cell has 16 channels per node.
    assert DartsNetwork(narrow, channels=4, layers=4, auxiliary=False).classifier.in_features == 2 * 16
    assert DartsNetwork(DARTS_V2, channels=4, layers=4, auxiliary=False).classifier.in_features == 4 * 16


def test_drop_path_keeps_expectation_and_drops_whole_samples() -> None:
    torch.manual_seed(0)
    x = torch.ones(20000, 2, 3, 3)
    y = drop_path(x, 0.3)
    per_sample = y.flatten(1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 1 / 0.7).all(1))
    assert abs(y.mean().item() - 1.0) < 0.03
    assert drop_path(x, 0.0) is x
