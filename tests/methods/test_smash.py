"""SMASH (Brock et al., 2018): generated weights fit every sampled child, gradients reach the HyperNet exactly, the
ranking is by validation loss (checked against a standalone network), and the export round-trips."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F  # noqa: N812

from lightning_nas.arch import Arch, Genotype, load_arch, save_arch
from lightning_nas.methods import SMASH, Retrain
from lightning_nas.ops import encode_arch
from lightning_nas.spaces import NasBench201Format, NasBench201Network
from tests.tiny import plain_data, quiet_trainer, tiny_darts_space, tiny_nb201_space

SPACES = {"nb201": tiny_nb201_space, "darts": tiny_darts_space}


def _convs_called(model: SMASH, x: Tensor) -> dict[str, Tensor]:
    """Each convolution the forward pass runs, by name, with the weight it ran (its config's shape checked)."""
    used: dict[str, Tensor] = {}
    handles = []
    for name, conv in model.space.named_modules():
        if isinstance(conv, nn.Conv2d):

            def record(module: nn.Conv2d, inputs: object, output: Tensor, name: str = name) -> None:
                expected = (module.out_channels, module.in_channels // module.groups, *module.kernel_size)
                assert tuple(module.weight.shape) == expected, name
                used[name] = module.weight

            handles.append(conv.register_forward_hook(record))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return used


@pytest.mark.parametrize("scope", ["1x1", "all"])
@pytest.mark.parametrize("space", sorted(SPACES))
def test_every_sampled_child_runs_generated_weights_of_the_shapes_it_needs(space: str, scope: str) -> None:
    model = SMASH(SPACES[space](), generate=scope, num_ranked=1)  # type: ignore[arg-type]
    x = torch.randn(2, 1, 8, 8)
    children = set()
    for step in range(8):
        arch = model.sample_path(step)
        model.activate(arch)
        weights = model.generate_weights(arch)
        used = _convs_called(model, x)
        generated = {name for name in used if f"{name}.weight" in weights}
        for name, conv in model.space.named_modules():
            if name in used and isinstance(conv, nn.Conv2d):
                pointwise = conv.kernel_size == (1, 1) and conv.groups == 1
                # a convolution in scope runs its generated tensor, one out of scope its own (trained) weight
                assert (name in generated) == (scope == "all" or pointwise), name
                if name in generated:  # the HyperNet's output for this child, not the stored parameter
                    assert torch.equal(used[name], weights[f"{name}.weight"]), name
                    assert used[name] is not conv.weight, name
                else:
                    assert used[name] is conv.weight, name
        assert generated
        children.add(frozenset(generated))
    assert len(children) > 1  # different children run different convolutions


def test_generated_conv_is_f_conv2d_of_the_reshaped_output_and_gradients_are_exact() -> None:
    model = SMASH(tiny_nb201_space(), num_ranked=1)
    arch = model.sample_path(3)
    while arch["1<-0"] != "nor_conv_1x1":
        arch = model.sample_path(int(torch.randint(1000, (1,))))
    model.activate(arch)
    hypernet = model.hypernet
    x, y = torch.randn(4, 1, 8, 8), torch.randint(4, (4,))
    encoding = encode_arch(arch, model.choices)
    # the edge 1<-0 op of the first cell: ReLUConvBN, conv at body.0
    conv_name = f"layers.0.edges.0.ops.{model.space.ops.index('nor_conv_1x1')}.body.0"
    position = hypernet.names.index(f"{conv_name}.weight")
    offset, size = sum(hypernet.sizes[:position]), hypernet.sizes[position]
    seen: dict[str, Tensor] = {}
    conv = model.space.get_submodule(conv_name)
    handle = conv.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0], y=out))
    weights = model.generate_weights(arch)
    for weight in weights.values():
        weight.retain_grad()
    loss = F.cross_entropy(functional_call(model.space, weights, (x,)), y)
    loss.backward()
    handle.remove()
    flat = hypernet.flat(encoding).detach()
    expected_out = F.conv2d(seen["x"], flat[offset : offset + size].view(conv.weight.shape))
    torch.testing.assert_close(seen["y"], expected_out, rtol=0, atol=1e-6)
    # W = b + V h: dL/db is dL/dW flattened; dL/dV = dL/dW h^T; the generated convs' stored weights get nothing
    grad_w = torch.cat([_grad(weights[name]).flatten() for name in hypernet.names])
    hidden = torch.relu(hypernet.encoder(encoding * hypernet._norm)).detach()
    assert hypernet.decoder.bias.grad is not None
    assert hypernet.decoder.weight.grad is not None
    torch.testing.assert_close(hypernet.decoder.bias.grad, grad_w, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(hypernet.decoder.weight.grad, torch.outer(grad_w, hidden), rtol=1e-5, atol=1e-7)
    assert float(grad_w[offset : offset + size].abs().sum()) > 0
    assert conv.weight.grad is None
    assert not conv.weight.requires_grad
    # dL/dU through the ReLU: (V^T dL/dW) * 1[z > 0], times the scaled encoding
    pre = hypernet.encoder(encoding * hypernet._norm).detach()
    grad_hidden = (hypernet.decoder.weight.detach().T @ grad_w) * (pre > 0)
    expected_u = torch.outer(grad_hidden, encoding * hypernet._norm)
    torch.testing.assert_close(hypernet.encoder.weight.grad, expected_u, rtol=1e-4, atol=1e-7)


def _grad(weight: Tensor) -> Tensor:
    """A generated weight's gradient; zero for the convolutions off the child's path."""
    return torch.zeros_like(weight) if weight.grad is None else weight.grad


def _standalone(model: SMASH, arch: Arch) -> NasBench201Network:
    """The architecture as a plain network, loaded with the supernet's free weights and the generated ones."""
    space = model.space
    net = NasBench201Network(
        arch, in_channels=1, num_classes=4, channels=space.channels, cells_per_stage=space.cells_per_stage, affine=False
    )
    chosen = [space.ops.index(str(arch[c.name])) for c in space.choices()]
    values = {**{k: v.detach() for k, v in space.state_dict().items()}, **model.generate_weights(arch)}
    state: dict[str, Tensor] = {}
    for key, value in values.items():
        parts = key.split(".")
        if parts[0] == "layers" and parts[2] == "edges":  # layers.i.edges.e.ops.k.rest -> layers.i.ops.e.rest
            if int(parts[5]) != chosen[int(parts[3])]:
                continue
            key = ".".join(["layers", parts[1], "ops", parts[3], *parts[6:]])
        state[key] = value.detach()
    state.pop("alpha")
    net.load_state_dict(state, strict=True)
    return net


def test_ranking_is_by_validation_loss_of_an_independent_network() -> None:
    pl.seed_everything(0)
    model = SMASH(tiny_nb201_space(), num_ranked=8, lr=0.01)
    quiet_trainer(max_steps=3, limit_val_batches=1).fit(model, datamodule=plain_data())
    assert len(model.ranking) == 8  # the epoch's validation ranked the whole set
    batches = [(torch.randn(8, 1, 8, 8), torch.randint(4, (8,))) for _ in range(2)]
    ranking = model.rank(model.ranked_set, batches)
    independent = {}
    for arch in model.ranked_set:
        net = _standalone(model, arch).train()  # batch statistics, as SMASH scores
        with torch.no_grad():
            independent[str(arch)] = sum(float(F.cross_entropy(net(x), y, reduction="sum")) for x, y in batches) / 16
    losses = [r.loss for r in ranking]
    assert losses == sorted(losses)
    for ranked in ranking:
        assert ranked.loss == pytest.approx(independent[str(ranked.arch)], rel=1e-5)
    assert str(ranking[0].arch) == min(independent, key=independent.__getitem__)
    assert len(set(losses)) > 1


def test_export_round_trips_through_json_the_arch_string_and_the_checkpoint(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = SMASH(tiny_nb201_space(), num_ranked=4)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    quiet_trainer(max_steps=3, limit_val_batches=1, callbacks=[checkpoint]).fit(model, datamodule=plain_data())
    exported = model.export()
    assert exported == model.ranking[0].arch
    assert load_arch(save_arch(exported, tmp_path / "cell.json")) == exported  # type: ignore[arg-type]
    fmt = NasBench201Format()
    assert fmt.parse(fmt.format(exported)) == exported
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert state["lightning_nas"]["result"] == exported
    fresh = SMASH(tiny_nb201_space(), num_ranked=4)
    fresh.on_load_checkpoint(state)
    assert fresh.ranking == model.ranking
    assert fresh.export() == exported


def test_darts_cell_export_is_a_genotype_that_retrain_builds(tmp_path: Path) -> None:
    model = SMASH(tiny_darts_space(), num_ranked=3)
    batches = [(torch.randn(4, 1, 8, 8), torch.randint(4, (4,)))]
    model.ranking = model.rank(model.ranked_set, batches)
    genotype = model.export()
    assert isinstance(genotype, Genotype)
    assert genotype.to_arch() == model.ranking[0].arch
    path = save_arch(genotype, tmp_path / "genotype.json")
    assert load_arch(path) == genotype
    retrain = Retrain(str(path), in_channels=1, num_classes=4, channels=4, layers=3, auxiliary=False)
    assert retrain(torch.randn(2, 1, 8, 8)).shape == (2, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"generate": "3x3"}, "'1x1', 'all'; got '3x3'"), ({"num_ranked": 0}, "num_ranked must be >= 1, got 0")],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SMASH(tiny_nb201_space(), **kwargs)  # type: ignore[arg-type]
