"""GDAS, PC-DARTS, DrNAS and DARTS-: each relaxation against its closed form or an independent gradient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn

from lightning_nas.methods import DARTS, GDAS, PCDARTS, DARTSMinus, DrNAS
from lightning_nas.methods.drnas import dirichlet_kl
from lightning_nas.ops import DARTS_OPS, FactorizedReduce, MixedOp, PartialChannelMixedOp
from lightning_nas.ops.relaxation import AuxiliarySkip, DirichletRelaxation, EdgeNormalization
from lightning_nas.sampling import derive_seed, seeded_random_ops
from lightning_nas.spaces import DartsCellSpace, NasBench201Space
from tests.tiny import bilevel_data, quiet_trainer, tiny_darts_space, tiny_nb201_space


def _count_op_calls(space: nn.Module) -> tuple[list[set[int]], list[MixedOp]]:
    """Per mixed op, the set of its candidate ops that ran (forward hooks on every module of each candidate)."""
    mixed_ops = [m for m in space.modules() if isinstance(m, MixedOp)]
    touched: list[set[int]] = [set() for _ in mixed_ops]
    for ran, mixed in zip(touched, mixed_ops):
        for index, op in enumerate(mixed.ops):
            for module in op.modules():
                module.register_forward_hook(lambda module, args, out, ran=ran, k=index: ran.add(k))
    return touched, mixed_ops


def _gumbel(seed: int, key: str, like: Tensor) -> Tensor:
    """The Gumbel noise the relaxation draws for ``key`` after ``resample(seed)``, drawn independently here."""
    with seeded_random_ops(derive_seed(seed, key), like.device):
        return -torch.empty_like(like).exponential_().log()


@pytest.mark.parametrize("space_builder", [tiny_nb201_space, tiny_darts_space], ids=["nb201", "darts-cell"])
def test_gdas_forward_runs_exactly_the_gumbel_max_op_on_each_edge(space_builder: type) -> None:
    model = GDAS(space_builder(), seed=3)
    space = model.space
    counters, mixed_ops = _count_op_calls(space)
    space.relaxation.resample(11)
    space.train()
    space(torch.randn(2, 1, 8, 8))
    # the op each edge must run: argmax(alpha + g) of its cell type's alphas
    expected = {
        key: (alpha.detach() + _gumbel(11, key, alpha)).argmax(-1).tolist() for key, alpha in space.alphas().items()
    }
    cells = [c for c in space.modules() if hasattr(c, "edges")]
    seen = 0
    for cell in cells:
        key = "cell" if isinstance(space, NasBench201Space) else ("reduce" if cell.reduction else "normal")
        for e, mixed in enumerate(cell.edges):
            ran = counters[mixed_ops.index(mixed)]
            assert ran == {expected[key][e]}, (key, e, ran)
            seen += 1
    assert seen == len(mixed_ops) > 0


def test_gdas_architecture_gradient_is_the_straight_through_softmax_gradient() -> None:
    model = GDAS(tiny_nb201_space(), tau_max=2.0)
    space = model.space
    space.relaxation.tau = 2.0
    with torch.no_grad():  # keep "none" from being drawn on every edge into the output (no path, no gradient)
        space.alpha[:, space.ops.index("none")] = -10.0
    captured: list[Tensor] = []

    def keep_weights(module: nn.Module, args: tuple[Tensor, str], out: tuple[Tensor, list[int]]) -> None:
        out[0].retain_grad()
        captured.append(out[0])

    space.relaxation.register_forward_hook(keep_weights)
    # every edge's output, to check the gradient that reaches the weights of the ops that did not run
    edge_outputs: list[tuple[int, Tensor]] = []
    for cell in (c for c in space.modules() if hasattr(c, "edges")):
        for e, mixed in enumerate(cell.edges):
            mixed.register_forward_hook(lambda m, args, out, e=e: edge_outputs.append((e, out)))
    space.relaxation.resample(5)
    space.train()
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    loss = nn.functional.cross_entropy(space(x), y)
    (alpha_grad,) = torch.autograd.grad(loss, [space.alpha], retain_graph=True)
    (h,) = captured
    grad_h, *grad_out = torch.autograd.grad(loss, [h, *(out for _, out in edge_outputs)])
    # the value is the hard one-hot of argmax(alpha + g)
    gumbel = _gumbel(5, "cell", space.alpha)
    logits = space.alpha.detach() + gumbel
    assert torch.equal(h.detach(), nn.functional.one_hot(logits.argmax(-1), 5).float())
    # the weights of the ops that did not run enter each edge as added zeros (GDAS's reference forward): their
    # gradient is the sum of dL/d(edge output) over the edge's elements, summed over the cells sharing the alphas
    through_sum = torch.zeros(h.shape[0])
    for (e, _), grad in zip(edge_outputs, grad_out):
        through_sum[e] += grad.sum()
    unselected = h.detach() == 0
    torch.testing.assert_close(grad_h[unselected], through_sum.unsqueeze(-1).expand_as(h)[unselected])
    # straight-through: dL/dalpha = J_softmax((alpha+g)/tau)^T dL/dh, J = (diag(p) - p p^T) / tau
    p = (logits / 2.0).softmax(-1)
    expected = p * (grad_h - (grad_h * p).sum(-1, keepdim=True)) / 2.0
    torch.testing.assert_close(alpha_grad, expected, rtol=1e-5, atol=1e-8)
    assert alpha_grad.abs().sum() > 0


def test_gdas_eval_forward_runs_the_exported_op_of_each_edge() -> None:
    model = GDAS(tiny_nb201_space())
    space = model.space
    with torch.no_grad():
        space.alpha.copy_(torch.randn_like(space.alpha))
    counters, _ = _count_op_calls(space)
    space.eval()
    space(torch.randn(2, 1, 8, 8))
    exported = [space.ops.index(op) for op in space.export_arch().values()]
    assert counters == [{k} for _ in range(3) for k in exported]  # 3 cells, each its 6 edges


def _shuffle_by_index(x: Tensor, groups: int) -> Tensor:
    """Channel ``g * (C // groups) + i`` goes to position ``i * groups + g`` (an explicit permutation)."""
    channels = x.shape[1]
    per_group = channels // groups
    order = [g * per_group + i for i in range(per_group) for g in range(groups)]
    return x[:, order]


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channel_mixed_op_is_split_mix_bypass_shuffle(stride: int) -> None:
    ops = ("none", "skip_connect", "avg_pool_3x3", "max_pool_3x3")
    op = PartialChannelMixedOp(ops, channels=8, stride=stride, k=4, normalize_pools=False)
    x = torch.randn(2, 8, 6, 6)
    alpha, edge_weight = torch.tensor([0.3, -0.2, 0.5, 0.1]), 0.4
    weights = alpha.softmax(0) * edge_weight
    x1, x2 = x[:, :2], x[:, 2:]
    # closed form: the ops on the first quarter of the channels (skip with stride 2 is a factorised reduction)
    skip = x1 if stride == 1 else op.ops[1](x1)
    avg = nn.functional.avg_pool2d(x1, 3, stride, 1, count_include_pad=False)
    mx = nn.functional.max_pool2d(x1, 3, stride, 1)
    mixed = weights[1] * skip + weights[2] * avg + weights[3] * mx
    bypass = x2 if stride == 1 else nn.functional.max_pool2d(x2, 2, 2)
    expected = _shuffle_by_index(torch.cat([mixed, edge_weight * bypass], 1), 4)
    torch.testing.assert_close(op(x, weights), expected)
    # the discrete view: one op on the quarter, the bypass unscaled
    torch.testing.assert_close(op.run_op(2, x), _shuffle_by_index(torch.cat([avg, bypass], 1), 4))


def test_edge_normalisation_is_a_softmax_over_each_nodes_incoming_edges() -> None:
    norm = EdgeNormalization({"cell": [[0], [1, 2], [3, 4, 5]]})
    with torch.no_grad():
        norm.betas["cell"].copy_(torch.tensor([2.0, 0.0, 1.0, -1.0, 0.0, 1.0]))
    alpha = torch.randn(6, 5)
    weights, chosen = norm(alpha, "cell")
    e = torch.e
    b = torch.tensor([1.0, 1 / (1 + e), e / (1 + e), 1 / (1 + e + e * e), e / (1 + e + e * e), e * e / (1 + e + e * e)])
    torch.testing.assert_close(weights, alpha.softmax(-1) * b[:, None])
    assert chosen is None


def test_pc_darts_genotype_ranks_edges_by_edge_weight_and_has_betas_as_arch_parameters() -> None:
    model = PCDARTS(tiny_darts_space(), partial_channels=2)
    space = model.space
    assert isinstance(space, DartsCellSpace)
    assert all(isinstance(m, PartialChannelMixedOp) for m in space.modules() if isinstance(m, MixedOp))
    relaxation = space.relaxation
    assert isinstance(relaxation, EdgeNormalization)
    arch_ids = {id(p) for p in space.arch_parameters()}
    assert {id(relaxation.betas["normal"]), id(relaxation.betas["reduce"])} <= arch_ids
    assert not arch_ids & {id(p) for p in space.weight_parameters()}
    with torch.no_grad():
        space.alpha_normal.zero_()
        relaxation.betas["normal"].copy_(torch.tensor([0.0, 0.0, -5.0, 0.0, 5.0]))  # node 3 reads states 0, 1, 2
    assert sorted(source for _, source in space.genotype().normal[2:]) == [1, 2]
    with torch.no_grad():
        relaxation.betas["normal"].copy_(torch.tensor([0.0, 0.0, 5.0, 0.0, -5.0]))
    assert sorted(source for _, source in space.genotype().normal[2:]) == [0, 1]


def _implicit_gamma_gradient(gamma: Tensor, concentration: Tensor) -> Tensor:
    """``dG/dc = -(dF(G; c)/dc) / p(G; c)`` for ``G ~ Gamma(c, 1)``: F by the regularised incomplete gamma function
    (its c-derivative by central differences), p the Gamma density. Float64."""
    step = 1e-4
    dcdf = (
        torch.special.gammainc(concentration + step, gamma) - torch.special.gammainc(concentration - step, gamma)
    ) / (2 * step)
    density = torch.exp((concentration - 1) * gamma.log() - gamma - torch.lgamma(concentration))
    return -dcdf / density


def test_drnas_sample_gradient_is_the_implicit_reparameterisation_of_its_gamma_draws() -> None:
    relaxation = DirichletRelaxation()
    alpha = torch.tensor([[0.5, -0.3, 1.2], [-1.0, 0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    relaxation.resample(7)
    weights, _ = relaxation(alpha, "cell")
    v = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.7, -1.1]], dtype=torch.float64)
    (grad,) = torch.autograd.grad((v * weights).sum(), [alpha])
    # independent: the same Gamma draws, then the chain rule by hand
    concentration = torch.where(alpha > 0, alpha + 1, alpha.exp()).detach()  # elu(alpha) + 1
    with seeded_random_ops(derive_seed(7, "cell"), alpha.device):
        gamma = torch.distributions.Gamma(concentration, torch.ones_like(concentration)).sample()
    total = gamma.sum(-1, keepdim=True)
    torch.testing.assert_close(weights.detach(), gamma / total)
    # d(sum_i v_i G_i / S)/dG_j = (v_j - sum_i v_i G_i / S) / S
    d_gamma = (v - (v * gamma).sum(-1, keepdim=True) / total) / total
    d_concentration = torch.where(alpha > 0, torch.ones_like(alpha), alpha.exp()).detach()
    expected = d_gamma * _implicit_gamma_gradient(gamma, concentration) * d_concentration
    # torch evaluates dG/dc by series and asymptotic approximations, accurate to about 1e-5 relative
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-8)


def test_drnas_kl_regulariser_is_the_dirichlet_kl_in_closed_form() -> None:
    c = torch.tensor([[0.5, 2.0, 1.5], [1.0, 3.0, 0.7]], dtype=torch.float64)
    prior = 0.8
    total = c.sum(-1)
    closed = (
        torch.lgamma(total)
        - torch.lgamma(c).sum(-1)
        - torch.lgamma(torch.tensor(3 * prior, dtype=torch.float64))
        + 3 * torch.lgamma(torch.tensor(prior, dtype=torch.float64))
        + ((c - prior) * (torch.digamma(c) - torch.digamma(total)[:, None])).sum(-1)
    ).sum()
    torch.testing.assert_close(dirichlet_kl(c, prior), closed)
    model = DrNAS(tiny_nb201_space(), reg_scale=0.01, prior=prior)
    with torch.no_grad():
        model.space.alpha.copy_(torch.randn_like(model.space.alpha))
    concentration = nn.functional.elu(model.space.alpha.detach().double()) + 1
    torch.testing.assert_close(
        model.regularizer().double(), 0.01 * dirichlet_kl(concentration, prior), rtol=1e-5, atol=0
    )


def test_drnas_exports_the_argmax_of_the_dirichlet_mean() -> None:
    model = DrNAS(tiny_nb201_space())
    with torch.no_grad():
        model.space.alpha.copy_(torch.randn_like(model.space.alpha) * 3)
    mean = nn.functional.elu(model.space.alpha.detach()) + 1
    mean = mean / mean.sum(-1, keepdim=True)
    torch.testing.assert_close(
        torch.tensor(list(model.space.arch_probabilities()["2<-1"].values()), dtype=torch.float64), mean[2].double()
    )
    assert [model.space.ops.index(op) for op in model.export().values()] == mean.argmax(-1).tolist()


def test_auxiliary_skip_adds_beta_times_the_input_to_the_darts_mixture() -> None:
    ops = ("none", "skip_connect", "avg_pool_3x3")
    mixed = MixedOp(ops, channels=3, stride=1, normalize_pools=False)
    x, alpha = torch.randn(2, 3, 5, 5), torch.randn(1, 3)
    weights, _ = AuxiliarySkip(ops, beta=0.3)(alpha, "cell")
    torch.testing.assert_close(mixed(x, weights[0]), mixed(x, alpha.softmax(-1)[0]) + 0.3 * x)
    with pytest.raises(ValueError, match="skip_connect"):
        AuxiliarySkip(("none", "avg_pool_3x3"))


def _quiet_trainer(epochs: int, root: Path | None = None, **kwargs: Any) -> pl.Trainer:
    """A trainer for ``epochs`` epochs without validation."""
    return quiet_trainer(root, max_epochs=epochs, limit_val_batches=0, **kwargs)


def _stride2_edge(model: DARTSMinus) -> MixedOp:
    return next(m for m in model.space.modules() if isinstance(m, MixedOp) and m.stride == 2)


def test_darts_minus_gives_each_stride2_edge_an_auxiliary_reduction_of_its_own() -> None:
    """As the reference code's ``MixedOp``: ``sum_k w_k op_k(x) + beta * FactorizedReduce_aux(x)``, with the
    auxiliary's weights apart from the candidate skip's, so each gets only its own term's gradient."""
    own, shared = DARTSMinus(tiny_darts_space(), beta_init=0.7), DARTSMinus(tiny_darts_space(), reduction_skip="shared")
    edge, skip = _stride2_edge(own), DARTS_OPS.index("skip_connect")
    assert isinstance(edge.auxiliary, FactorizedReduce)
    assert edge.auxiliary is not edge.ops[skip]
    assert {id(p) for p in edge.auxiliary.parameters()}.isdisjoint(id(p) for p in edge.ops[skip].parameters())
    # stride-1 edges keep the identity (shared, parameter-free); "shared" has no auxiliary anywhere
    assert all(m.auxiliary is None for m in own.space.modules() if isinstance(m, MixedOp) and m.stride == 1)
    assert not shared.space.has_auxiliary_skips()
    assert _stride2_edge(shared).auxiliary is None
    # parameters added: two 1x1 convs C -> C/2 on each of the 2 * steps stride-2 edges of every reduction cell
    steps, reductions = 2, [cell.edges[0].channels for cell in own.space.search_cells() if cell.reduction]
    added = sum(p.numel() for p in own.parameters()) - sum(p.numel() for p in shared.parameters())
    assert added == sum(2 * steps * 2 * (c * (c // 2)) for c in reductions) == 4 * (8 * 8 + 16 * 16)

    edge.train()
    x, upstream = torch.randn(4, 8, 6, 6), torch.randn(4, 8, 3, 3)
    alpha = torch.randn(1, len(DARTS_OPS))
    weights, _ = own.space.relaxation(alpha, "reduce")
    out = edge(x, weights[0])
    (out * upstream).sum().backward()
    got = {name: p.grad.clone() for name, p in edge.named_parameters()}
    edge.zero_grad()
    # the independent truth: the plain DARTS mixture and 0.7 times the auxiliary module, each on its own
    mixture, auxiliary = edge(x, alpha.softmax(-1)[0]), edge.auxiliary(x)
    torch.testing.assert_close(out, mixture + 0.7 * auxiliary)
    assert not torch.allclose(auxiliary, edge.ops[skip](x), atol=1e-3)  # a different reduction, not the candidate
    (mixture * upstream).sum().backward()
    for name, p in edge.named_parameters():
        if not name.startswith("auxiliary."):
            torch.testing.assert_close(got[name], p.grad, msg=name)
    edge.zero_grad()
    (0.7 * edge.auxiliary(x) * upstream).sum().backward()
    for name, p in edge.auxiliary.named_parameters():
        torch.testing.assert_close(got[f"auxiliary.{name}"], p.grad, msg=name)


def test_darts_minus_resumes_a_checkpoint_written_before_own_reductions_as_it_was_trained(tmp_path: Path) -> None:
    def fit(model: DARTSMinus, epochs: int, ckpt: Path | None = None) -> None:
        checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
        trainer = _quiet_trainer(epochs, tmp_path, callbacks=[checkpoint])
        trainer.fit(model, datamodule=bilevel_data(), ckpt_path=ckpt)

    pl.seed_everything(0)
    straight = DARTSMinus(tiny_darts_space(), reduction_skip="shared")
    fit(straight, 2)
    pl.seed_everything(0)
    fit(DARTSMinus(tiny_darts_space(), reduction_skip="shared"), 1)
    old = torch.load(tmp_path / "last.ckpt", weights_only=False)
    del old["hyper_parameters"]["reduction_skip"]  # as written before the option existed
    torch.save(old, tmp_path / "old.ckpt")
    resumed = DARTSMinus(tiny_darts_space())  # the default, "own"
    with pytest.warns(UserWarning, match="reduction_skip='shared'.*loading it as 'shared'"):
        fit(resumed, 2, tmp_path / "old.ckpt")
    assert resumed.reduction_skip == "shared"
    assert not resumed.space.has_auxiliary_skips()
    assert resumed.state_dict().keys() == straight.state_dict().keys()
    for (name, value), expected in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.equal(value, expected), name


class _Record(pl.Callback):
    def __init__(self) -> None:
        self.values: list[tuple[int, int, float]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        relaxation = pl_module.space.relaxation
        value = relaxation.tau if hasattr(relaxation, "tau") else relaxation.beta
        self.values.append((trainer.current_epoch, trainer.global_step - 1, value))


def _fit(model: DARTS, epochs: int) -> list[tuple[int, int, float]]:
    record = _Record()
    _quiet_trainer(epochs, callbacks=[record]).fit(model, datamodule=bilevel_data())
    return record.values


def test_schedules_gdas_temperature_per_epoch_and_darts_minus_skip_weight_per_step() -> None:
    gdas = _fit(GDAS(tiny_nb201_space(), tau_max=10.0, tau_min=0.1), epochs=3)  # 3 batches per epoch
    assert [round(tau, 9) for _, _, tau in gdas] == [10.0] * 3 + [5.05] * 3 + [0.1] * 3
    minus = _fit(DARTSMinus(tiny_nb201_space(), beta_decay="linear"), epochs=2)
    assert [(step, round(beta, 9)) for _, step, beta in minus] == [(t, round(1 - t / 6, 9)) for t in range(6)]
    cosine = DARTSMinus(tiny_nb201_space(), beta_decay="cosine", beta_init=2.0)
    assert [round(cosine.skip_coefficient(t), 9) for t in (0.0, 0.5, 1.0)] == [2.0, 1.0, 0.0]


@pytest.mark.parametrize("method", [GDAS, PCDARTS, DrNAS, DARTSMinus], ids=lambda m: m.__name__)
@pytest.mark.parametrize("space_builder", [tiny_nb201_space, tiny_darts_space], ids=["nb201", "darts-cell"])
def test_every_sibling_moves_every_architecture_parameter_on_both_spaces(method: type, space_builder: type) -> None:
    options = {"partial_channels": 2} if method is PCDARTS else {}
    model = method(space_builder(), unrolled_lr=0.1, **options)
    model.space.train()
    model.space.relaxation.resample(1)
    batch = (torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,)))
    grads, loss = model.architecture_gradient(batch, batch)
    assert len(grads) == len(model.space.arch_parameters()) >= 1
    assert torch.isfinite(loss)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert model.space.validate_arch(model.current_arch())
