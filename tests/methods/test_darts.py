"""The DARTS LightningModule: a real search lowers the validation loss; hooks, errors and checkpoints."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor

from lightning_nas.arch import Genotype, save_arch
from lightning_nas.data import FashionMNISTDataModule, SyntheticDataModule
from lightning_nas.methods import DARTS, Retrain
from lightning_nas.methods.retrain import resolve_genotype
from lightning_nas.ops import DARTS_OPS
from lightning_nas.spaces.genotypes import PUBLISHED_GENOTYPES
from tests.tiny import quiet_trainer, tiny_darts_space


def test_search_on_fashion_mnist_lowers_validation_loss(data_root: Path, tmp_path: Path) -> None:
    pl.seed_everything(0)
    data = FashionMNISTDataModule(root=str(data_root), search=True, subset=2048, batch_size=32, seed=0)
    model = DARTS(tiny_darts_space(num_classes=10), order="first", weight_lr=0.1, channels_last=True)
    trainer = quiet_trainer(tmp_path, max_epochs=2)
    before = trainer.validate(model, datamodule=data, verbose=False)[0]["val/loss"]
    alphas_before = [a.detach().clone() for a in model.space.arch_parameters()]
    trainer.fit(model, datamodule=data)
    metrics = trainer.validate(model, datamodule=data, verbose=False)[0]
    after = metrics["val/loss"]
    assert after < 0.75 * before, (before, after)
    assert metrics["val/acc"] > 0.4  # chance is 0.1
    assert all(not torch.equal(a, b) for a, b in zip(model.space.arch_parameters(), alphas_before))
    # Lightning's global_step counts weight steps only: one per bilevel batch.
    assert trainer.global_step == 2 * (1024 // 32)


def test_second_order_step_applies_the_hypergradient(tmp_path: Path) -> None:
    """One step's alpha update equals Adam's first step on the hypergradient computed by the functional API."""
    from lightning_nas.functional import darts_arch_gradient

    pl.seed_everything(0)
    model = DARTS(tiny_darts_space(), order="second", arch_lr=0.01)
    gen = torch.Generator().manual_seed(0)
    batch = {
        k: (torch.randn(8, 1, 8, 8, generator=gen), torch.randint(0, 4, (8,), generator=gen)) for k in ("train", "val")
    }
    model.train()
    alphas = model.space.arch_parameters()
    before = [a.detach().clone() for a in alphas]
    expected, _ = darts_arch_gradient(
        lambda: model.training_loss(model(batch["train"][0]), batch["train"][1]),
        lambda: model.architecture_loss(model(batch["val"][0]), batch["val"][1]),
        list(model.space.weight_parameters()),
        alphas,
        order="second",
        xi=0.025,
    )
    # Adam's first step moves each entry by lr * g / (|g| + eps) ~ lr * sign(g); weight decay 1e-3 adds a bit.
    loader = torch.utils.data.DataLoader([batch], batch_size=None)
    quiet_trainer(tmp_path, max_steps=1).fit(model, train_dataloaders=loader)
    for a, b, g in zip(alphas, before, expected):
        moved = b - a.detach()
        significant = g.abs() > 1e-6
        assert torch.equal(torch.sign(moved[significant]), torch.sign(g[significant]))


class SkipLover(DARTS):
    """A user's subclass that overrides one hook: the architecture loss prefers skip connections."""

    calls = 0

    def architecture_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        SkipLover.calls += 1
        skip = self.space.ops.index("skip_connect")
        probs = torch.cat([a.softmax(-1)[:, skip] for a in self.space.arch_parameters()])
        return super().architecture_loss(logits, targets) * 0.0 - probs.sum()


def test_subclass_overrides_one_hook(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = SkipLover(tiny_darts_space(), order="first", arch_lr=0.05)
    data = SyntheticDataModule(num_samples=128, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=16)
    quiet_trainer(tmp_path, max_epochs=2).fit(model, datamodule=data)
    assert SkipLover.calls == 2 * 4
    assert {op for op, _ in model.genotype.normal + model.genotype.reduce} == {"skip_connect"}


def test_plain_batches_are_refused_with_the_fix(tmp_path: Path) -> None:
    data = SyntheticDataModule(num_samples=64, num_classes=4, in_channels=1, image_size=8, batch_size=16)
    with pytest.raises(TypeError, match=r"search=True \(--data.search=true\)"):
        quiet_trainer(tmp_path, max_steps=1).fit(DARTS(tiny_darts_space(), order="first"), datamodule=data)


def test_num_classes_must_match_the_data(tmp_path: Path) -> None:
    data = SyntheticDataModule(num_samples=64, num_classes=3, in_channels=1, image_size=8, search=True)
    with pytest.raises(ValueError, match=r"the data has 3 classes but the model was built with num_classes=10"):
        quiet_trainer(tmp_path, max_steps=1).fit(
            DARTS(tiny_darts_space(num_classes=10), order="first"), datamodule=data
        )
    data = SyntheticDataModule(num_samples=64, num_classes=10, in_channels=3, image_size=8, search=True)
    with pytest.raises(ValueError, match=r"3 image channels but the model was built with in_channels=1"):
        quiet_trainer(tmp_path, max_steps=1).fit(
            DARTS(tiny_darts_space(num_classes=10), order="first"), datamodule=data
        )


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="order must be 'first' or 'second', got 'third'"):
        DARTS(tiny_darts_space(num_classes=10), order="third")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="DARTS needs a DifferentiableSpace, got Linear"):
        DARTS(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_checkpoint_records_the_genotype_and_refuses_another_method(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = DARTS(tiny_darts_space(), order="first")
    data = SyntheticDataModule(num_samples=64, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=16)
    trainer = quiet_trainer(tmp_path, max_steps=2)
    trainer.fit(model, datamodule=data)
    path = tmp_path / "search.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["lightning_nas"]["result"] == model.genotype.to_json()
    assert checkpoint["lightning_nas"]["space"] == "DartsCellSpace"
    retrain = Retrain("DARTS_V2", in_channels=1, num_classes=4, channels=4, layers=3)
    with pytest.raises(ValueError, match=r"checkpoint is from method 'DARTS'; this run uses method 'Retrain'"):
        retrain.on_load_checkpoint(checkpoint)


def test_ops_subset_space_searches(tmp_path: Path) -> None:
    space = tiny_darts_space(layers=2, ops=DARTS_OPS[:4])
    data = SyntheticDataModule(num_samples=64, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=16)
    model = DARTS(space, order="second")
    quiet_trainer(tmp_path, max_steps=2).fit(model, datamodule=data)
    assert model.genotype.ops() <= set(DARTS_OPS[1:4])


def test_retrain_ramps_drop_path_linearly(tmp_path: Path) -> None:
    seen: list[float] = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
            if args[-1] == 0:  # first batch of the epoch
                seen.append(pl_module.network.drop_path_prob)  # type: ignore[union-attr]

    model = Retrain("DARTS_V2", in_channels=1, num_classes=4, channels=4, layers=3, drop_path_prob=0.2)
    data = SyntheticDataModule(num_samples=64, num_classes=4, in_channels=1, image_size=8, batch_size=16)
    quiet_trainer(tmp_path, max_epochs=4, limit_val_batches=0, callbacks=[Probe()]).fit(model, datamodule=data)
    assert seen == pytest.approx([0.0, 0.05, 0.1, 0.15])  # 0.2 * epoch / 4, as the reference schedule


def test_a_darts_cell_mapping_retrains_as_its_genotype(tmp_path: Path) -> None:
    """SPOS and CARS on the DARTS cell export the choice mapping (``normal/node2/op0``: ...), which Retrain refused
    ('holds an architecture mapping, not a DARTS genotype') although their pages say the result retrains."""
    mapping = {}
    normal = ("sep_conv_3x3", "skip_connect", "max_pool_3x3", "dil_conv_3x3")
    cells = {"normal": normal, "reduce": ("avg_pool_3x3",) * 4}
    for cell, ops in cells.items():
        for index, op in enumerate(ops):
            node, slot = 2 + index // 2, index % 2
            mapping[f"{cell}/node{node}/op{slot}"] = op
            mapping[f"{cell}/node{node}/in{slot}"] = (0, 1, 2, 0)[index]
    save_arch(mapping, tmp_path / "spos.json")
    expected = Genotype(
        normal=(("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 2), ("dil_conv_3x3", 0)),
        normal_concat=(2, 3),
        reduce=(("avg_pool_3x3", 0), ("avg_pool_3x3", 1), ("avg_pool_3x3", 2), ("avg_pool_3x3", 0)),
        reduce_concat=(2, 3),
    )
    assert resolve_genotype(str(tmp_path / "spos.json")) == expected
    assert Retrain(str(tmp_path / "spos.json"), in_channels=1, num_classes=4, channels=4, layers=3).genotype == expected
    save_arch({"edge_1_0": "nor_conv_3x3"}, tmp_path / "nb201.json")
    with pytest.raises(ValueError, match=r"not a DARTS cell's .*unknown choices: \['edge_1_0'\]"):
        resolve_genotype(str(tmp_path / "nb201.json"))


def test_a_retrain_checkpoint_refuses_another_architecture_and_keeps_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint named its genotype by the arch path it was built from: read again from another directory, or
    after the file changed, the weights loaded into other cells without a word."""
    save_arch(PUBLISHED_GENOTYPES["DARTS_V2"], tmp_path / "arch.json")
    options = {"in_channels": 1, "num_classes": 4, "channels": 4, "layers": 3}
    trained = Retrain(str(tmp_path / "arch.json"), **options)
    checkpoint: dict = {}
    trained.on_save_checkpoint(checkpoint)
    Retrain("DARTS_V2", **options).on_load_checkpoint(checkpoint)  # the same genotype, named otherwise: loads
    with pytest.raises(ValueError, match=r"the checkpoint trained another architecture than this run's arch builds"):
        Retrain("DARTS_V1", **options).on_load_checkpoint(checkpoint)
    monkeypatch.chdir(tmp_path / "..")  # the hyperparameters rebuild the trained genotype from anywhere
    assert Retrain(**trained.hparams).genotype == PUBLISHED_GENOTYPES["DARTS_V2"]


@pytest.mark.parametrize("nesterov", [False, True])
def test_weight_nesterov_reaches_the_weight_optimizer(tmp_path: Path, nesterov: bool) -> None:
    """NAS-Bench-201's runs of DARTS and GDAS use Nesterov momentum: the flag sets torch's SGD, the alphas' Adam
    is unchanged."""
    model = DARTS(tiny_darts_space(), order="first", weight_nesterov=nesterov)
    gen = torch.Generator().manual_seed(0)
    batch = {
        k: (torch.randn(4, 1, 8, 8, generator=gen), torch.randint(0, 4, (4,), generator=gen)) for k in ("train", "val")
    }
    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader([batch], batch_size=None))
    weight_opt, arch_opt = trainer.optimizers
    assert isinstance(weight_opt, torch.optim.SGD)
    assert weight_opt.param_groups[0]["nesterov"] is nesterov
    assert isinstance(arch_opt, torch.optim.Adam)


@pytest.mark.parametrize("weights_first", [False, True])
def test_step_order_matches_plain_torch_updates_in_that_order(tmp_path: Path, weights_first: bool) -> None:
    """One training step equals SGD on the weights and Adam on the alphas done by hand in the chosen order: the
    alphas first (Algorithm 1), or the weights first (NAS-Bench-201's reference loop), whose architecture gradient is
    taken at the updated weights. The two orders give different alphas, so the test tells them apart."""
    pl.seed_everything(0)
    model = DARTS(tiny_darts_space(), order="first", arch_lr=0.01, weights_first=weights_first)
    gen = torch.Generator().manual_seed(0)
    batch = {
        k: (torch.randn(8, 1, 8, 8, generator=gen), torch.randint(0, 4, (8,), generator=gen)) for k in ("train", "val")
    }
    reference = copy.deepcopy(model).train()
    weights = list(reference.space.weight_parameters())
    alphas = reference.space.arch_parameters()
    sgd = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
    adam = torch.optim.Adam(alphas, lr=0.01, betas=(0.5, 0.999), weight_decay=1e-3)

    def weight_update() -> None:
        x, y = batch["train"]
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(reference(x), y), weights, allow_unused=True)
        for w, g in zip(weights, grads):
            w.grad = torch.zeros_like(w) if g is None else g
        torch.nn.utils.clip_grad_norm_(weights, 5.0)
        sgd.step()

    def alpha_update() -> None:
        x, y = batch["val"]
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(reference(x), y), alphas)
        for a, g in zip(alphas, grads):
            a.grad = g
        adam.step()

    for update in (weight_update, alpha_update) if weights_first else (alpha_update, weight_update):
        update()
    other_order = copy.deepcopy(model)
    other_order.weights_first = not weights_first
    for module in (model, other_order):
        quiet_trainer(tmp_path, max_steps=1).fit(
            module, train_dataloaders=torch.utils.data.DataLoader([batch], batch_size=None)
        )
    for got, want, other in zip(
        model.space.arch_parameters(), alphas, other_order.space.arch_parameters(), strict=True
    ):
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(got, other, rtol=1e-5, atol=1e-6)
    for got, want in zip(model.space.weight_parameters(), weights, strict=True):
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-5, atol=1e-6)
