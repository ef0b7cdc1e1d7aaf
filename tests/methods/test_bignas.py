"""BigNAS (issue 5): the sandwich step is the sum of its subnets' gradients, inplace distillation, the learning-rate
schedule, parameter groups, zero-initialised residual blocks, validation of three subnets, coarse-to-fine selection
under a constraint, a short real Fashion-MNIST run, and bad input."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lightning_nas.cli import main
from lightning_nas.data import FashionMNISTDataModule, SyntheticDataModule
from lightning_nas.methods import BigNAS
from lightning_nas.methods.bignas import exponential_decay_with_floor, weight_decay_groups, zero_init_residual_blocks
from lightning_nas.ops.elastic import ElasticInvertedResidual
from lightning_nas.search import CoarseToFineSearch, ConstraintError, CostModel, SupernetEvaluator, run_search
from lightning_nas.spaces import DartsCellSpace, ElasticMobileNetV3
from tests.tiny import TINY_WIDTHS, plain_data, quiet_trainer, tiny_elastic_space


def _model(**kwargs: Any) -> BigNAS:
    defaults: dict[str, Any] = {"calibration_images": 0, "warmup_epochs": 0}
    return BigNAS(tiny_elastic_space(), **{**defaults, **kwargs})


def _trainer(root: Path, **kwargs: Any) -> pl.Trainer:
    # training alone, unless a test asks for validation
    return quiet_trainer(root, **{"limit_val_batches": 0, **kwargs})


def _data(num_samples: int = 32) -> SyntheticDataModule:
    return SyntheticDataModule(num_samples=num_samples, num_classes=4, in_channels=1, image_size=16, batch_size=16)


class CaptureStep(pl.Callback):
    """The first step's batch (as the model saw it) and its gradients just before the optimizer step."""

    def __init__(self) -> None:
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self.grads: dict[str, torch.Tensor | None] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *args: Any) -> None:
        if self.batch is None:
            self.batch = (batch[0].clone(), batch[1].clone())

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if not self.grads:
            self.grads = {n: None if p.grad is None else p.grad.clone() for n, p in pl_module.space.named_parameters()}


def test_sandwich_step_equals_the_sum_of_separate_subnet_gradients(tmp_path: Path) -> None:
    """One step through the Trainer: largest (smoothed CE, dropout), smallest and 3 random subnets (distillation
    from the largest's detached logits). Each subnet's gradient computed alone on a copy of the initial model, with
    the same teacher logits, sums to the step's gradient parameter for parameter."""
    pl.seed_everything(0)
    model = _model(num_random_subnets=3)
    initial, capture = copy.deepcopy(model), CaptureStep()
    _trainer(tmp_path, max_steps=1, callbacks=[capture]).fit(model, datamodule=_data())
    assert capture.batch is not None
    x, y = capture.batch
    subnets = initial.sandwich_subnets(0)
    assert [arch for _, arch in subnets] == model.sampled_archs()
    assert len({str(arch) for arch in model.sampled_archs()}) == 5

    total: dict[str, torch.Tensor] = {}
    teacher = None
    for role, arch in subnets:
        initial.space.zero_grad(set_to_none=True)
        loss, logits = initial.subnet_loss(x, y, arch, role, teacher, step=0)
        loss.backward()
        if role == "max":
            teacher = logits.detach()
        for name, p in initial.space.named_parameters():
            if p.grad is not None:
                total[name] = total[name] + p.grad if name in total else p.grad.clone()
    assert total.keys() == {n for n, g in capture.grads.items() if g is not None}
    for name, grad in total.items():
        torch.testing.assert_close(capture.grads[name], grad, rtol=1e-6, atol=1e-9, msg=name)
    assert any(g.abs().sum() > 0 for g in total.values())


def test_augmentation_reaches_the_largest_subnet_only(tmp_path: Path) -> None:
    """``augment_largest``: the largest subnet trains on its own augmented view (a flip with probability 1 is the
    mirror image, a closed form); its soft targets come from a gradient-free pass on the plain batch, which every
    student trains on."""
    pl.seed_everything(0)
    model = _model(num_random_subnets=1, augment_largest=True, largest_crop_padding=0, largest_flip=1.0)
    seen: list[tuple[dict[str, Any], torch.Tensor, bool]] = []
    model.space.register_forward_pre_hook(
        lambda module, args: seen.append((module.active_arch(), args[0].detach().clone(), torch.is_grad_enabled()))
    )
    capture = CaptureStep()
    _trainer(tmp_path, max_steps=1, callbacks=[capture]).fit(model, datamodule=_data())
    assert capture.batch is not None
    x = capture.batch[0]
    largest, smallest = model.space.sample_max_subnet(), model.space.sample_min_subnet()
    assert [(arch == largest, grad) for arch, _, grad in seen] == [(True, True), (True, False), (False, True)] + [
        (seen[3][0] == largest, True)
    ]
    assert torch.equal(seen[0][1], x.flip(-1))  # the largest subnet's own view
    assert all(torch.equal(inputs, x) for _, inputs, _ in seen[1:])  # its soft targets and the students: plain
    assert seen[2][0] == smallest
    with pytest.raises(ValueError, match="largest_flip=1.5"):
        _model(largest_flip=1.5)


def test_distillation_loss_is_cross_entropy_to_the_teachers_soft_predictions() -> None:
    model = _model()
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], requires_grad=True)
    teacher = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]], requires_grad=True)
    loss = model.student_loss(student, torch.tensor([0, 1]), teacher)
    expected = 0.0
    for s, t in zip(student.tolist(), teacher.tolist()):
        p = [math.exp(v) / sum(math.exp(u) for u in t) for v in t]
        log_q = [v - math.log(sum(math.exp(u) for u in s)) for v in s]
        expected += -sum(pi * qi for pi, qi in zip(p, log_q)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # = KL(p || q) + H(p): the same gradient as the KL divergence
    p = teacher.detach().softmax(1)
    kl = (p * (p.log() - student.log_softmax(1))).sum(1).mean()
    entropy = -(p * p.log()).sum(1).mean()
    assert loss.item() == pytest.approx((kl + entropy).item(), rel=1e-6)
    loss.backward()
    assert teacher.grad is None  # the teacher's logits are detached
    torch.testing.assert_close(student.grad, (student.softmax(1) - p).detach() / 2)
    # without distillation the students learn the labels
    plain = _model(distill=False).student_loss(student, torch.tensor([0, 1]), None)
    assert plain.item() == pytest.approx(nn.functional.cross_entropy(student, torch.tensor([0, 1])).item())


def test_learning_rate_decays_exponentially_to_a_constant_floor(tmp_path: Path) -> None:
    def closed_form(step: int) -> float:
        return max(0.4 * 0.5 ** ((step - 2) / 2), 0.4 * 0.2) if step >= 2 else 0.4 * step / 2

    lrs: list[float] = []

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    # two batches per epoch: warm-up 1 epoch (2 steps), then halving every epoch (2 steps), floor 20%
    model = _model(lr=0.4, decay_rate=0.5, decay_epochs=1, lr_floor=0.2, warmup_epochs=1, num_random_subnets=0)
    _trainer(tmp_path, max_epochs=5, callbacks=[Probe()]).fit(model, datamodule=_data())
    assert lrs == pytest.approx([closed_form(step) for step in range(10)])
    assert lrs[:7] == pytest.approx([0.0, 0.2, 0.4, 0.4 * 0.5**0.5, 0.2, 0.2 * 0.5**0.5, 0.1])
    assert lrs[-3:] == pytest.approx([0.08] * 3)  # 0.4 * 0.5**3.5 < 0.08: the floor
    assert exponential_decay_with_floor(24, base_lr=1.0, decay_rate=0.97, decay_steps=2.4, floor=0.05) == (
        pytest.approx(0.97**10)
    )


def test_no_weight_decay_on_batch_norm_and_biases() -> None:
    model = _model(weight_decay=1e-4)
    decay, no_decay = model.configure_optimizers().param_groups
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (1e-4, 0.0)
    decayed, exempt = {id(p) for p in decay["params"]}, {id(p) for p in no_decay["params"]}
    assert not decayed & exempt
    assert decayed | exempt == {id(p) for p in model.space.parameters()}
    for module in model.space.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, nn.modules.batchnorm._BatchNorm) or name == "bias":
                assert id(p) in exempt, (type(module).__name__, name)
            elif isinstance(module, (nn.Conv2d, nn.Linear)) or name == "weight":
                assert id(p) in decayed, (type(module).__name__, name)
    assert len(weight_decay_groups(nn.BatchNorm2d(3), 0.1)[0]["params"]) == 0


def test_residual_blocks_start_as_the_identity() -> None:
    space = tiny_elastic_space()
    residual = [m for m in space.modules() if isinstance(m, ElasticInvertedResidual) and m.residual]
    plain = [m for m in space.modules() if isinstance(m, ElasticInvertedResidual) and not m.residual]
    assert residual
    assert plain
    assert all(bool((m.project_bn.weight != 0).all()) for m in residual)  # the space alone is not zeroed
    model = _model()
    assert zero_init_residual_blocks(copy.deepcopy(model.space)) == len(residual)
    for block in model.space.modules():
        if not isinstance(block, ElasticInvertedResidual):
            continue
        x = torch.randn(2, block.in_channels, 6, 6)
        if block.residual:
            assert torch.equal(block(x), x)
        else:
            assert bool((block.project_bn.weight != 0).all())
    untouched = _model(zero_init_residual=False)
    assert all(bool((m.project_bn.weight != 0).all()) for m in untouched.space.modules() if m in residual)


def test_dropout_only_in_the_largest_subnet() -> None:
    model = _model()
    model.space.dropout = 0.5
    model.space.classifier_dropout.p = 0.5
    x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 4, (4,))
    largest, smallest = model.space.sample_max_subnet(), model.space.sample_min_subnet()
    _, a = model.subnet_loss(x, y, largest, "max", None, step=0)
    _, b = model.subnet_loss(x, y, largest, "max", None, step=1)
    _, c = model.subnet_loss(x, y, largest, "max", None, step=1)
    assert not torch.equal(a, b)
    assert torch.equal(b, c)
    with torch.no_grad():
        model.space.activate(smallest)
        model.space.classifier_dropout.p = 0.0
        reference = model(x)
        model.space.classifier_dropout.p = 0.5
    _, student = model.subnet_loss(x, y, smallest, "min", a.detach(), step=0)
    torch.testing.assert_close(student, reference)
    assert model.space.classifier_dropout.p == 0.5  # restored


def test_validation_reports_largest_smallest_and_middle(tmp_path: Path) -> None:
    model = _model(calibration_images=32, calibration_batch_size=16)
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=_data())
    metrics = trainer.callback_metrics
    for name in ("max", "min", "middle"):
        assert 0.0 <= float(metrics[f"val/{name}/acc"]) <= 1.0
    assert set(model.subnet_statistics) == {"max", "min", "middle"}
    results = model.subnet_results()
    assert [arch for arch, _ in results] == list(model.evaluation_subnets().values())
    params = [m["params"] for _, m in results]
    assert params[1] < params[2] < params[0]
    assert all(set(m) == {"val/acc", "params", "flops"} for _, m in results)
    assert float(metrics["val/max/acc"]) == pytest.approx(results[0][1]["val/acc"])
    assert model.sampled_archs() == [arch for _, arch in model.sandwich_subnets(1)]


def test_coarse_to_fine_selection_respects_the_constraint() -> None:
    space = tiny_elastic_space()
    costs = CostModel(space, image_size=16)
    smallest, largest = costs.params(space.sample_min_subnet()), costs.params(space.sample_max_subnet())
    limit = (smallest + largest) / 2
    batches = [(torch.randn(8, 1, 16, 16), torch.randint(0, 4, (8,)))]
    evaluate = SupernetEvaluator(space, batches, calibration_batches=[x for x, _ in batches])
    strategy = CoarseToFineSearch(space.choices(), levels=2, constraints=[costs.constraint("params", limit)], seed=1)
    best = run_search(strategy, lambda arch: {**evaluate(arch), "params": costs.params(arch)}, 24)
    assert all(trial.metrics["params"] <= limit for trial in strategy.history)
    assert best.metrics["params"] <= limit
    assert strategy.history[0].arch == space.sample_min_subnet()  # the grid starts with the all-smallest
    grid = {str(arch) for arch in strategy.grid}
    assert any(str(trial.arch) not in grid for trial in strategy.history)  # the fine stage ran
    assert len({str(trial.arch) for trial in strategy.history}) == len(strategy.history)  # nothing asked twice
    exported = space.export_subnet(best.arch)
    assert sum(p.numel() for p in exported.parameters()) == best.metrics["params"]


def test_real_fashion_mnist_run_trains_both_ends(data_root: Path, tmp_path: Path) -> None:
    """Sandwich training on 4096 real Fashion-MNIST images for 4 epochs (about 40 s on one core); after BN
    recalibration the largest and the smallest subnet both score far above chance (0.1) on 1000 test images, and
    the largest above the smallest."""
    pl.seed_everything(0)
    space = ElasticMobileNetV3(
        in_channels=1,
        num_classes=10,
        preset="cifar",
        widths=TINY_WIDTHS,
        resolutions=(8, 12),
        kernel_sizes=(3, 5),
        depths=(1, 2),
        expand_ratios=(2, 4),
    )
    model = BigNAS(
        space,
        num_random_subnets=1,
        lr=0.1,
        warmup_epochs=0.25,
        decay_epochs=1.0,
        decay_rate=0.7,
        calibration_images=500,
        calibration_batch_size=250,
        channels_last=True,
    )
    data = FashionMNISTDataModule(root=str(data_root), subset=4096, batch_size=64, eval_batch_size=500, augment=False)
    _trainer(tmp_path, max_epochs=4).fit(model, datamodule=data)
    metrics = _trainer(tmp_path, limit_val_batches=2).validate(model, datamodule=data, verbose=False)[0]
    subnets = model.evaluation_subnets()  # two candidates per choice: the middle subnet alternates between them
    assert subnets["middle"] not in (subnets["max"], subnets["min"])
    assert metrics["val/min/acc"] > 0.6, metrics
    assert metrics["val/max/acc"] > metrics["val/min/acc"], metrics


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="num_random_subnets must be an integer >= 0, got -1"):
        _model(num_random_subnets=-1)
    with pytest.raises(ValueError, match="distill=True needs a teacher subnet, but teacher='none'"):
        _model(teacher="none")
    with pytest.raises(ValueError, match="teacher must be 'largest' or 'none', got 'smallest'"):
        _model(teacher="smallest")
    with pytest.raises(ValueError, match="distill=True needs the largest subnet's logits"):
        _model().student_loss(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), None)
    with pytest.raises(TypeError, match="BigNAS needs an ElasticSpace, got DartsCellSpace"):
        BigNAS(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=2))  # type: ignore[arg-type]
    students_only = _model(teacher="none", distill=False, num_random_subnets=1)
    assert [role for role, _ in students_only.sandwich_subnets(0)] == ["min", "random"]

    space = tiny_elastic_space()
    costs = CostModel(space, image_size=16)
    smallest = space.count_params(space.sample_min_subnet())
    impossible = CoarseToFineSearch(space.choices(), constraints=[costs.constraint("params", smallest - 1)])
    with pytest.raises(ConstraintError, match=rf"params <= {smallest - 1} \(smallest achievable: {smallest}\)"):
        impossible.ask()
    with pytest.raises(ValueError, match="num_mutations must be >= 1, got 0"):
        CoarseToFineSearch(space.choices(), num_mutations=0)


def test_cli_fit_then_coarse_to_fine_search_then_export(data_root: Path, tmp_path: Path) -> None:
    """The README's three commands on the shipped Fashion-MNIST config, shrunk: a 4-step fit, a coarse-to-fine
    search under a parameter limit, and the best subnet exported as a standalone network that loads without us."""
    config = str(Path(__file__).resolve().parents[2] / "configs/bignas/fashion_mnist.yaml")
    tiny = [
        f"--data.init_args.root={data_root}",
        "--data.init_args.subset=64",
        "--data.init_args.eval_batch_size=64",
        "--model.space.init_args.widths=[8,8,8,8,8,8,8,16,16]",
        "--model.space.init_args.resolutions=[12,16]",
    ]
    fit = ["fit", "--config", config, *tiny, f"--trainer.default_root_dir={tmp_path}"]
    fit += [f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.max_steps=4", "--trainer.limit_val_batches=2"]
    fit += [
        "--model.calibration_images=64",
        "--trainer.enable_model_summary=false",
        "--trainer.enable_progress_bar=false",
    ]
    assert main(fit) == 0
    checkpoint = next((tmp_path / "bignas_fashion_mnist").rglob("last.ckpt"))
    space = ElasticMobileNetV3(
        in_channels=1, num_classes=10, preset="cifar", widths=(8,) * 7 + (16, 16), resolutions=(12, 16)
    )
    limit = (space.count_params(space.sample_min_subnet()) + space.count_params(space.sample_max_subnet())) // 2
    out = tmp_path / "search"
    search = ["search", "--config", config, *tiny, "--ckpt_path", str(checkpoint), "--strategy", "coarse_to_fine"]
    search += ["--levels", "2", "--num_evaluations", "10", "--num_batches", "1", "--calibration_batches", "1"]
    assert main([*search, "--max_params", str(limit), "--output_dir", str(out)]) == 0
    best = json.loads((out / "best_architecture.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 10
    assert all(trial["metrics"]["params"] <= limit for trial in history)
    assert space.count_params(best) <= limit

    exported = tmp_path / "best.pt2"
    export = ["export", "--ckpt_path", str(checkpoint), "--subnet", str(out / "best_architecture.json")]
    assert main([*export, "--output", str(exported), "--calibration_images", "64", "--input_size", "28"]) == 0
    extra = {"architecture.json": ""}
    network = torch.export.load(exported, extra_files=extra).module()
    assert json.loads(extra["architecture.json"]) == best
    assert network(torch.randn(3, 1, 28, 28)).shape == (3, 10)

    with pytest.raises(SystemExit) as exit_info:  # a limit below the smallest subnet: a one-line error
        main([*search, "--max_params", "10", "--output_dir", str(tmp_path / "none")])
    assert exit_info.value.code == 2


def test_genotype_logger_records_the_sandwich_and_plots_the_three_subnets(tmp_path: Path) -> None:
    from lightning_nas.callbacks import GenotypeLogger

    model = _model(num_random_subnets=1)
    logger = GenotypeLogger(pictures=True, cell_renderer="matplotlib", log_artifacts=False)
    _trainer(tmp_path, max_epochs=2, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[logger]).fit(
        model, datamodule=_data()
    )
    lines = [json.loads(line) for line in next(tmp_path.rglob("architecture_history.jsonl")).read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1]
    assert lines[-1]["arch"] == model.space.sample_max_subnet()
    sampled = lines[0]["sampled"]["resolution"]  # largest (16) and smallest (8) in every step, one random
    assert sum(sampled.values()) == pytest.approx(1.0)
    assert sampled["16"] >= 1 / 3
    assert sampled["8"] >= 1 / 3
    assert sorted(p.name for p in tmp_path.rglob("subnets_*.png"))


def test_more_calibration_images_than_training_images_is_refused_before_training(tmp_path: Path) -> None:
    """Found only at the first validation ('the loader holds 48 images; 100 were asked'), after an epoch of training,
    and without naming the setting to change."""
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    with pytest.raises(ValueError, match=r"asks for 100 training images, but the training set holds 48: .*"
                       r"--model.calibration_images=48 or less"):  # fmt: skip
        trainer.fit(_model(calibration_images=100), datamodule=plain_data())
    assert trainer.global_step == 0
