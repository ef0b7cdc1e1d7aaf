"""The ENAS macro space, its standalone network, and the graph hints (NodeChoice) of the cell spaces."""

from __future__ import annotations

import pytest
import torch

from lightning_nas.arch import Choice
from lightning_nas.ops import ENAS_MACRO_OPS
from lightning_nas.spaces import DartsCellSpace, EnasMacroNetwork, EnasMacroSpace, NodeChoice
from lightning_nas.spaces.enas_macro import macro_reduction_layers


def _arch(layers: int, op: str = "conv_3x3", skips: frozenset[tuple[int, int]] = frozenset()) -> dict[str, object]:
    arch: dict[str, object] = {}
    for i in range(layers):
        arch[f"layer{i}/op"] = op
        arch.update({f"layer{i}/skip{j}": int((i, j) in skips) for j in range(i)})
    return arch


def test_choices_and_graph_follow_the_paper() -> None:
    space = EnasMacroSpace(in_channels=1, num_classes=3, channels=4, layers=12)
    choices = space.choices()
    assert len(choices) == 12 + 12 * 11 // 2  # one op per layer, one skip per earlier layer
    assert all(c.candidates == ENAS_MACRO_OPS for c in choices if c.name.endswith("/op"))
    graph = space.node_choices()
    assert set(graph) == {c.name for c in choices}
    assert graph["layer5/skip3"] == NodeChoice("layer5", "connect", ("layer3",))
    assert macro_reduction_layers(12) == (3, 7)


@pytest.mark.parametrize("op", ENAS_MACRO_OPS)
def test_every_op_runs_and_skips_cross_reductions(op: str) -> None:
    space = EnasMacroSpace(in_channels=1, num_classes=3, channels=4, layers=6)  # reductions after layers 1 and 3
    space.activate(_arch(6, op, frozenset({(5, 0), (4, 1), (2, 0)})))
    assert space(torch.randn(2, 1, 16, 16)).shape == (2, 3)


def test_skip_connections_change_the_output_exactly_when_chosen() -> None:
    torch.manual_seed(0)
    space = EnasMacroSpace(in_channels=1, num_classes=3, channels=4, layers=3).eval()
    x = torch.randn(2, 1, 8, 8)
    outputs = {}
    for skips in (frozenset(), frozenset({(2, 0)})):
        space.activate(_arch(3, "avg_pool_3x3", skips))
        outputs[skips] = space(x)
    assert not torch.allclose(outputs[frozenset()], outputs[frozenset({(2, 0)})])
    space.activate(None)  # the whole supernet: every op averaged, every skip on
    assert space(x).shape == (2, 3)


def test_network_of_an_arch_has_only_its_ops() -> None:
    arch = _arch(4, "sep_conv_5x5", frozenset({(3, 0)}))
    arch["layer2/op"] = "max_pool_3x3"
    net = EnasMacroNetwork(arch, in_channels=1, num_classes=3, channels=4)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    space = EnasMacroSpace(in_channels=1, num_classes=3, channels=4, layers=4)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in space.parameters())
    assert [len(layer_ops) for layer_ops in net.chain.ops] == [1, 1, 1, 1]


def test_bad_inputs() -> None:
    space = EnasMacroSpace(in_channels=1, channels=4, layers=3)
    with pytest.raises(ValueError, match=r"choice 'layer1/skip0' got 2; valid values: 0, 1"):
        space.activate({**_arch(3), "layer1/skip0": 2})
    with pytest.raises(ValueError, match=r"architecture is missing choices \['layer2/skip1'\]"):
        space.activate({k: v for k, v in _arch(3).items() if k != "layer2/skip1"})
    with pytest.raises(ValueError, match="need layers >= 1"):
        EnasMacroSpace(layers=0)
    with pytest.raises(ValueError, match=r"not a macro architecture \(no 'layer<i>/op' choices\)"):
        EnasMacroNetwork({"normal/node2/op0": "sep_conv_3x3"})
    with pytest.raises(ValueError, match=r"unknown op 'conv_7x7'"):
        EnasMacroNetwork({"layer0/op": "conv_7x7"})
    with pytest.raises(ValueError, match=r"expected images \[B, 1, H, W\]"):
        space(torch.randn(2, 3, 8, 8))


def test_darts_cell_inputs_are_selections_among_earlier_nodes() -> None:
    space = DartsCellSpace(in_channels=1, channels=4, layers=3, steps=3)
    graph = space.node_choices()
    for choice in space.choices():
        info = graph[choice.name]
        cell, node, slot = choice.name.split("/")
        assert info.node == f"{cell}/{node}"
        if slot.startswith("in"):
            assert info.kind == "select"
            assert info.sources == tuple(f"{cell}/node{j}" for j in choice.candidates)
        else:
            assert info == NodeChoice(f"{cell}/{node}", "op")


def test_node_choice_refuses_inconsistent_sources() -> None:
    with pytest.raises(ValueError, match=r"a 'op' NodeChoice of node 'n1' names no source, got \('n0',\)"):
        NodeChoice("n1", "op", ("n0",))
    with pytest.raises(ValueError, match="a 'select' NodeChoice of node 'n1' names at least one source"):
        NodeChoice("n1", "select")
    with pytest.raises(ValueError, match="node 'n1' cannot read itself"):
        NodeChoice("n1", "select", ("n0", "n1"))
    with pytest.raises(ValueError, match="NodeChoice kind must be one of op, select, connect; got 'skip'"):
        NodeChoice("n1", "skip", ("n0",))  # type: ignore[arg-type]
    assert Choice("x", (0, 1)).validate(1) == 1
