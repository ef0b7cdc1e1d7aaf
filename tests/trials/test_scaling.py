"""Compound scaling: the grid finds a known optimum under the constraint; scaled FLOPs grow about 2^phi."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_nas.search import count_network_cost, run_search
from lightning_nas.spaces import ElasticMobileNetV3
from lightning_nas.trials import EFFICIENTNET_PRESETS, GridSearch, coefficient_grid, scale_network
from lightning_nas.trials.scaling import scale_mobilenet_subnet, write_family, write_mobilenet_family
from tests.tiny import tiny_darts_space


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


WIDTHS = (16, 16, 24, 40, 80, 112, 160, 480, 640)


def _mobilenet(preset: str = "cifar") -> ElasticMobileNetV3:
    return ElasticMobileNetV3(in_channels=3, num_classes=10, preset=preset, widths=WIDTHS)  # type: ignore[arg-type]


def test_mobilenet_subnet_scales_every_stage_width_and_the_resolution() -> None:
    space = _mobilenet()
    arch = space.sample_subnet(torch.Generator().manual_seed(3))
    member = scale_mobilenet_subnet(space, arch, 2, 1.2, 1.1, 1.15)
    # widths x 1.1^2 = 19.36, 19.36, 29.04, 48.4, 96.8, 135.52, 193.6, 580.8, 774.4 -> nearest multiple of 8, and
    # never below 90% of the exact value (16 < 17.4, so 24)
    assert member.space["widths"] == [24, 24, 32, 48, 96, 136, 192, 584, 776]
    # the resolution x 1.15^2 = 1.3225, to the nearest integer (the CIFAR preset's stem has stride 1)
    assert member.arch["resolution"] == {24: 32, 28: 37, 32: 42}[arch["resolution"]]
    for s in range(5):
        kept = arch[f"stage{s}/depth"]
        assert member.arch[f"stage{s}/depth"] == {2: 3, 3: 5, 4: 6}[kept]  # ceil(d x 1.2^2 = 1.44 d)
        for b in range(member.arch[f"stage{s}/depth"]):
            source = min(b, kept - 1)  # the kept blocks, then repeats of the stage's last one
            for key in ("kernel", "expand"):
                assert member.arch[f"stage{s}/block{b}/{key}"] == arch[f"stage{s}/block{source}/{key}"]
    # the exported plain network is the scaled one: its hook-counted FLOPs and parameters equal the analytic counts
    network, size = member.network(), member.arch["resolution"]
    assert count_network_cost(network, (3, size, size)).flops == member.flops
    assert sum(p.numel() for p in network.parameters()) == member.params
    same = scale_mobilenet_subnet(space.config(), arch, 0, 1.2, 1.1, 1.15)
    assert same.flops == space.count_flops(arch)
    assert same.params == space.count_params(arch)


@pytest.mark.parametrize("preset", ["cifar", "imagenet"])
def test_scaled_mobilenet_flops_grow_by_the_constraint_to_the_phi(preset: str) -> None:
    space = _mobilenet(preset)
    arch = space.sample_max_subnet()
    alpha, beta, gamma = 1.2, 1.1, 1.15
    base = scale_mobilenet_subnet(space, arch, 0, alpha, beta, gamma)
    for phi in (1, 2, 3):
        member = scale_mobilenet_subnet(space, arch, phi, alpha, beta, gamma)
        # within the rounding (depth 4 -> ceil(4 x 1.2^phi), widths to multiples of 8): (1.92)^phi
        target = (alpha * beta**2 * gamma**2) ** phi
        assert target / 1.35 < member.flops / base.flops < target * 1.35


def test_mobilenet_family_json_builds_its_members(tmp_path: Path) -> None:
    space = _mobilenet()
    arch = space.sample_min_subnet()
    family = write_mobilenet_family(tmp_path / "family.json", space, arch, [0, 1], 1.2, 1.1, 1.15)
    saved = json.loads((tmp_path / "family.json").read_text())
    assert saved["base"] == {"space": space.config(), "arch": arch}
    for member, entry in zip(family, saved["family"]):
        rebuilt = ElasticMobileNetV3(**entry["space"])
        assert (entry["phi"], entry["arch"], entry["flops"]) == (member.phi, member.arch, member.flops)
        assert rebuilt.count_flops(entry["arch"]) == member.flops


def test_mobilenet_scaling_bad_input() -> None:
    space = _mobilenet()
    arch = space.sample_min_subnet()
    with pytest.raises(ValueError, match="phi must be a finite number >= 0.*got -1"):
        scale_mobilenet_subnet(space, arch, -1, 1.2, 1.1, 1.15)
    with pytest.raises(ValueError, match=r"must be >= 1.*\{'beta': 0.9\}"):
        scale_mobilenet_subnet(space, arch, 1, 1.2, 0.9, 1.15)
    darts = tiny_darts_space(num_classes=10)
    with pytest.raises(TypeError, match="elastic MobileNetV3.*DartsCellSpace; scale a genotype network"):
        scale_mobilenet_subnet(darts, arch, 1, 1.2, 1.1, 1.15)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stage0/depth"):
        scale_mobilenet_subnet(space, {**arch, "stage0/depth": 5}, 1, 1.2, 1.1, 1.15)
    with pytest.raises(ValueError, match="phi must be"):
        scale_network(-0.5, 1.2, 1.1, 1.15, depth=8, width=16, resolution=32)
