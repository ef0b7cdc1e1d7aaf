"""The DARTS cell search space: sizes, genotype derivation, the discrete view."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lightning_nas.arch import Genotype
from lightning_nas.ops import DARTS_OPS
from lightning_nas.spaces import DARTS_V2, DartsCellSpace, derive_genotype
from tests.tiny import tiny_darts_space


def _space(**kwargs: Any) -> DartsCellSpace:
    return tiny_darts_space(**{"num_classes": 5, "steps": 4, **kwargs})


def test_paper_sizes() -> None:
    space = DartsCellSpace(channels=16, layers=8)
    # 14 edges per cell (2 + 3 + 4 + 5) x 8 ops, one matrix for normal and one for reduction cells.
    assert [tuple(a.shape) for a in space.arch_parameters()] == [(14, 8), (14, 8)]
    reductions = [i for i, cell in enumerate(space.cells) if cell.reduction]
    assert reductions == [2, 5]
    assert sum(len(cell.edges) for cell in space.cells) == 8 * 14
    assert space(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_weight_and_arch_parameters_partition_the_parameters() -> None:
    space = _space()
    arch_ids = {id(p) for p in space.arch_parameters()}
    weight_ids = {id(p) for p in space.weight_parameters()}
    assert not arch_ids & weight_ids
    assert arch_ids | weight_ids == {id(p) for p in space.parameters()}


def _alphas_for(genotype_edges: list[tuple[str, int]], ops: tuple[str, ...], steps: int) -> torch.Tensor:
    """Alphas whose strongest entries spell out ``genotype_edges``, with a big ``none`` on every edge."""
    num_edges = sum(i + 2 for i in range(steps))
    alpha = torch.zeros(num_edges, len(ops))
    alpha[:, ops.index("none")] = 10.0  # none must be ignored when ranking and choosing
    offset = 0
    for node in range(steps):
        for rank, (op, source) in enumerate(genotype_edges[2 * node : 2 * node + 2]):
            alpha[offset + source, ops.index(op)] = 5.0 - rank  # first listed edge is the strongest
        offset += node + 2
    return alpha


def test_derive_genotype_from_hand_set_alphas() -> None:
    normal = list(DARTS_V2.normal)
    reduce = list(DARTS_V2.reduce)
    ops = tuple(DARTS_OPS)
    genotype = derive_genotype(_alphas_for(normal, ops, 4), _alphas_for(reduce, ops, 4), ops, steps=4)
    assert genotype == DARTS_V2


def test_derive_genotype_breaks_ties_to_lower_input() -> None:
    ops = ("none", "skip_connect", "sep_conv_3x3")
    alpha = torch.zeros(2 + 3, 3)  # steps=2: edges 0->2, 1->2, 0->3, 1->3, 2->3, all equal
    genotype = derive_genotype(alpha, alpha, ops, steps=2)
    assert genotype.normal == (("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 0), ("skip_connect", 1))


def test_choices_cover_the_genotype_format() -> None:
    space = _space()
    choices = space.choices()
    assert len(choices) == 2 * 4 * 2 * 2  # cells x nodes x slots x (op, input)
    by_name = {c.name: c for c in choices}
    assert by_name["reduce/node5/in1"].candidates == (0, 1, 2, 3, 4)
    assert "none" not in by_name["normal/node2/op0"].candidates
    space.validate_arch(DARTS_V2.to_arch())


def test_discrete_view_runs_only_the_genotype() -> None:
    space = _space().eval()
    x = torch.randn(2, 1, 16, 16)
    space.activate(DARTS_V2)
    out = space(x)
    out.sum().backward()
    normal_cell = space.cells[0]
    used = {2 * 0 + 0, 2 * 0 + 1}  # node 2 reads inputs 0 and 1 through sep_conv_3x3
    sep = DARTS_OPS.index("sep_conv_3x3")
    for edge_index in used:
        assert any(p.grad is not None for p in normal_cell.edges[edge_index].ops[sep].parameters())
    unused_op = DARTS_OPS.index("sep_conv_5x5")
    assert all(p.grad is None for p in normal_cell.edges[0].ops[unused_op].parameters())
    assert all(a.grad is None for a in space.arch_parameters())
    space.activate(None)
    assert not torch.allclose(space(x), out)


def test_activate_accepts_arch_mapping_and_rejects_bad_values() -> None:
    space = _space()
    space.activate(DARTS_V2.to_arch())
    bad = {**DARTS_V2.to_arch(), "normal/node3/in0": 7}
    with pytest.raises(ValueError, match=r"choice 'normal/node3/in0' got 7; valid values: 0, 1, 2"):
        space.activate(bad)
    with pytest.raises(ValueError, match=r"unknown ops \['dil_conv_3x3', 'sep_conv_3x3'\]"):
        _space(ops=("none", "skip_connect", "max_pool_3x3")).activate(DARTS_V2)
    with pytest.raises(ValueError, match="genotype has 4 nodes per cell; this space has 2"):
        _space(steps=2).activate(DARTS_V2)


def test_bad_construction_and_input() -> None:
    with pytest.raises(ValueError, match="unknown op 'conv_7x7'"):
        _space(ops=("none", "conv_7x7"))
    with pytest.raises(ValueError, match="distinct"):
        _space(ops=("skip_connect", "skip_connect"))
    with pytest.raises(ValueError, match=r"expected images \[B, 1, H, W\], got shape \(2, 3, 8, 8\)"):
        _space()(torch.randn(2, 3, 8, 8))


def test_genotype_round_trips_through_arch() -> None:
    space = _space(steps=3)
    genotype = space.genotype()
    assert Genotype.from_arch(space.export_arch(), steps=3) == genotype
