"""Compound scaling: the grid finds a known optimum under the constraint; scaled FLOPs grow about 2^phi."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from lightning_nas.search import count_network_cost, run_search
from lightning_nas.trials import EFFICIENTNET_PRESETS, GridSearch, coefficient_grid, scale_network
from lightning_nas.trials.scaling import write_family


def test_grid_meets_the_constraint_and_returns_the_known_optimum() -> None:
    grid = coefficient_grid(step=0.05, low=1.0, high=1.5, tolerance=0.1)
    assert all(abs(a * b * b * g * g - 2.0) <= 0.1 for a, b, g in grid)

    # an objective rewarding depth most, then resolution, then width: on the constraint surface its optimum
    # is the admissible point with the largest alpha, then gamma, then beta
    def objective(c: dict) -> dict[str, float]:
        return {"accuracy": 100 * c["alpha"] + 10 * c["gamma"] + c["beta"]}

    expected = max(grid, key=lambda p: (p[0], p[2], p[1]))
    archs = [{"alpha": a, "beta": b, "gamma": g} for a, b, g in grid]
    best = run_search(GridSearch(archs), objective, len(archs)).arch
    assert (best["alpha"], best["beta"], best["gamma"]) == expected
    strategy = GridSearch(archs[:1])
    strategy.ask()
    with pytest.raises(ValueError, match="exhausted"):
        strategy.ask()


def plain_net(depth: int, width: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1, bias=False)]
    layers += [nn.Conv2d(width, width, 3, padding=1, bias=False) for _ in range(depth - 1)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("phi", [1, 2, 3])
def test_scaled_flops_grow_by_the_constraint_to_the_phi(phi: int) -> None:
    alpha, beta, gamma = 1.2, 1.1, 1.15
    base = scale_network(0, alpha, beta, gamma, depth=8, width=64, resolution=32)
    member = scale_network(phi, alpha, beta, gamma, depth=8, width=64, resolution=32)
    flops = [
        count_network_cost(plain_net(m.depth, m.width), (3, m.resolution, m.resolution)).flops for m in (base, member)
    ]
    # exact FLOPs of the rounded network: (depth - 1) width^2 + 3 width convolutions of 9 taps per pixel
    for m, f in zip((base, member), flops):
        assert f == 9 * m.resolution**2 * ((m.depth - 1) * m.width**2 + 3 * m.width)
    # within the rounding of depth (up to 1 layer in 8), width (8 channels) and resolution: (1.92)^phi
    ratio = flops[1] / flops[0]
    target = (alpha * beta**2 * gamma**2) ** phi
    assert target / 1.35 < ratio < target * 1.35


def test_family_json_and_the_efficientnet_table(tmp_path: Path) -> None:
    family = write_family(tmp_path / "family.json", [0, 1, 2], 1.2, 1.1, 1.15, depth=8, width=16, resolution=32)
    saved = json.loads((tmp_path / "family.json").read_text())
    assert [m["depth"] for m in saved["family"]] == [m.depth for m in family] == [8, 10, 12]
    # the released B0-B7 (width, depth, resolution, dropout)
    table = {name: (p.width, p.depth, p.resolution, p.dropout) for name, p in EFFICIENTNET_PRESETS.items()}
    assert table == {
        "b0": (1.0, 1.0, 224, 0.2),
        "b1": (1.0, 1.1, 240, 0.2),
        "b2": (1.1, 1.2, 260, 0.3),
        "b3": (1.2, 1.4, 300, 0.3),
        "b4": (1.4, 1.8, 380, 0.4),
        "b5": (1.6, 2.2, 456, 0.4),
        "b6": (1.8, 2.6, 528, 0.5),
        "b7": (2.0, 3.1, 600, 0.5),
    }
