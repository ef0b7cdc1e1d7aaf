"""The NAS-Bench-201 space (issue 9): arch strings against the benchmark's table, parameter counts against its
``params_mb``, both views of the supernet, the standalone network, and bad input."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from lightning_nas.arch import validate_arch
from lightning_nas.ops import NB201_OPS
from lightning_nas.spaces import NB201_EDGES, NasBench201Format, NasBench201Network, NasBench201Space
from tests.tiny import tiny_nb201_space

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture(scope="module")
def table_rows(nb201_path: Path) -> list[dict[str, str]]:
    with nb201_path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _tiny_space(**kwargs: Any) -> NasBench201Space:
    return tiny_nb201_space(**{"num_classes": 5, **kwargs})


def test_every_table_string_parses_prints_back_and_is_a_distinct_valid_cell(table_rows: list[dict[str, str]]) -> None:
    fmt = NasBench201Format()
    choices = fmt.choices()
    parsed = []
    for row in table_rows:
        arch = fmt.parse(row["arch"])
        assert validate_arch(arch, choices) == arch
        assert fmt.format(arch) == row["arch"]
        parsed.append(tuple(arch[c.name] for c in choices))
    # 15,625 distinct cells: the whole space, each cell once.
    assert len(table_rows) == 5**6
    assert set(parsed) == set(itertools.product(NB201_OPS, repeat=6))


def test_choices_follow_the_strings_edge_order() -> None:
    assert [c.name for c in NasBench201Format().choices()] == [f"{t}<-{s}" for t, s in NB201_EDGES]
    assert NB201_EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    arch = NasBench201Format().parse(CELL)
    assert list(arch.values()) == [
        "nor_conv_3x3",  # 1<-0
        "nor_conv_3x3",  # 2<-0
        "avg_pool_3x3",  # 2<-1
        "skip_connect",  # 3<-0
        "nor_conv_3x3",  # 3<-1
        "skip_connect",  # 3<-2
    ]


@pytest.mark.parametrize("row", [0, 1, 2, 3, 5, 1234, 7777, 15624])
def test_parameter_count_matches_the_tables_params_mb(table_rows: list[dict[str, str]], row: int) -> None:
    """``params_mb`` counts the CIFAR-10 network (C=16, N=5, a 10-way classifier) in millions, printed to 6
    significant digits: 10 classes match; 100 (CIFAR-100) would add 90 x (64 + 1) = 5,850 parameters."""
    record = table_rows[row]
    counts = {
        classes: sum(p.numel() for p in NasBench201Network(record["arch"], num_classes=classes).parameters())
        for classes in (10, 100)
    }
    assert _as_printed(counts[10]) == float(record["params_mb"])
    assert _as_printed(counts[100]) != float(record["params_mb"])
    assert counts[100] - counts[10] == 90 * 65


def _as_printed(count: int) -> float:
    """A parameter count in millions, to the table's 6 significant digits."""
    return float(f"{count / 1e6:.6g}")


def test_cells_without_convolutions_and_all_3x3_cells_are_the_extremes_of_params_mb(
    table_rows: list[dict[str, str]],
) -> None:
    params = {row["arch"]: float(row["params_mb"]) for row in table_rows}

    def uniform(op: str) -> str:
        return "+".join("|" + "|".join(f"{op}~{s}" for s in range(t)) + "|" for t in (1, 2, 3))

    for op, extreme in (("nor_conv_3x3", max), ("none", min), ("avg_pool_3x3", min), ("skip_connect", min)):
        assert params[uniform(op)] == extreme(params.values()), op
        assert _as_printed(sum(p.numel() for p in NasBench201Network(uniform(op)).parameters())) == params[uniform(op)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", r"unknown op 'conv_5x5' on edge 1<-0 .*valid ops: "),
        ("|none~0|+|none~0|none~1|", r"has 2 node groups; a NAS-Bench-201 cell has 3"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|", r"has 4 node groups"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", r"node 2 of .* has 1 incoming edges; it needs 2"),
        ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", r"edge 2<-1 .* names source '2'"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", r"edge 1<-0 .*expected 'op~0', got 'none0'"),
        ("none~0+|none~0|none~1|+|none~0|none~1|none~2|", r"node 1 of .*expected '\|op~source\|...\|'"),
    ],
)
def test_bad_arch_strings_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NasBench201Format().parse(text)


def test_unknown_op_message_lists_every_valid_op() -> None:
    with pytest.raises(ValueError, match="unknown op 'max_pool_3x3'") as info:
        NasBench201Format().parse(CELL.replace("avg_pool_3x3", "max_pool_3x3"))
    assert str(info.value).endswith("valid ops: " + ", ".join(NB201_OPS))
    with pytest.raises(TypeError, match="must be a str, got dict"):
        NasBench201Format().parse({"1<-0": "none"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="choice '3<-2' got 'conv'"):
        NasBench201Format().format({**NasBench201Format().parse(CELL), "3<-2": "conv"})


def test_benchmark_sizes() -> None:
    space = NasBench201Space()
    assert [tuple(a.shape) for a in space.arch_parameters()] == [(6, 5)]
    kinds = [type(layer).__name__ for layer in space.layers]
    assert (
        kinds
        == ["SearchCell"] * 5 + ["ResidualReduction"] + ["SearchCell"] * 5 + ["ResidualReduction"] + ["SearchCell"] * 5
    )
    assert space(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32), (1, 8)])
def test_forward_shapes_in_both_views(channels: int, size: int) -> None:
    space = _tiny_space(in_channels=channels)
    x = torch.randn(2, channels, size, size)
    assert space(x).shape == (2, 5)
    space.activate(CELL)
    assert space(x).shape == (2, 5)
    space.activate(None)
    assert space(x).shape == (2, 5)
    with pytest.raises(ValueError, match=r"expected images \[B, 2, H, W\]"):
        _tiny_space(in_channels=2)(x[:, :1])


def test_one_hot_alphas_give_the_discrete_view() -> None:
    """Mixing with softmax(alpha) = one-hot on the chosen ops computes exactly what activate(arch) runs."""
    space = _tiny_space().eval()
    arch = NasBench201Format().parse(CELL)
    with torch.no_grad():
        space.alpha.fill_(-float("inf"))
        for edge, choice in enumerate(space.choices()):
            space.alpha[edge, NB201_OPS.index(str(arch[choice.name]))] = 0.0
    x = torch.randn(3, 1, 12, 12)
    mixed = space(x)
    space.activate(arch)
    torch.testing.assert_close(space(x), mixed)
    assert space.export_arch() == arch


@pytest.mark.parametrize("affine", [False, True])
def test_exported_network_computes_what_the_activated_supernet_computes(affine: bool) -> None:
    space = _tiny_space(affine=affine, cells_per_stage=2)
    with torch.no_grad():  # non-trivial BatchNorm statistics and weights
        for module in space.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    space.eval().activate(CELL)
    network = space.export_network(CELL).eval()
    assert network.arch_string == CELL
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(network(x), space(x))
    owned = sum(p.numel() for p in network.parameters())
    assert owned < sum(p.numel() for p in space.weight_parameters())


def test_export_arch_is_each_edges_strongest_op_none_included() -> None:
    space = _tiny_space()
    with torch.no_grad():
        space.alpha.copy_(torch.tensor([[5.0, 0, 0, 0, 0]] * 6) + torch.eye(6, 5))
    exported = space.export_arch()
    assert list(exported.values()) == ["none"] * 6
    with torch.no_grad():
        space.alpha.zero_()
        space.alpha[:, NB201_OPS.index("skip_connect")] = 1.0
    assert space.arch_string() == "|skip_connect~0|+|skip_connect~0|skip_connect~1|+" + "|".join(
        ["", "skip_connect~0", "skip_connect~1", "skip_connect~2", ""]
    )


def test_weight_and_arch_parameters_partition_the_parameters() -> None:
    space = _tiny_space()
    arch_ids = {id(p) for p in space.arch_parameters()}
    weight_ids = {id(p) for p in space.weight_parameters()}
    assert not arch_ids & weight_ids
    assert arch_ids | weight_ids == {id(p) for p in space.parameters()}


def test_activate_rejects_invalid_architectures() -> None:
    space = _tiny_space()
    with pytest.raises(ValueError, match="unknown choices"):
        space.activate({"normal/node2/op0": "sep_conv_3x3"})
    with pytest.raises(ValueError, match="unknown op 'sep_conv_3x3'"):
        space.activate(CELL.replace("avg_pool_3x3", "sep_conv_3x3"))
    with pytest.raises(ValueError, match=r"need channels >= 1 and cells_per_stage >= 1"):
        NasBench201Space(cells_per_stage=0)
    with pytest.raises(ValueError, match="ops must be distinct"):
        NasBench201Space(ops=("none", "none"))
