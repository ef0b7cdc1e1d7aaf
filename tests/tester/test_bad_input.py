"""Bad input across the CLI, configs, architectures, datasets, strategies and checkpoints: each case asserts the
error type, that the message names the bad value, and that no existing output file was touched."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lightning_nas.arch import Choice, Genotype, load_arch, validate_arch
from lightning_nas.cli import main
from lightning_nas.data import FashionMNISTDataModule, SyntheticDataModule
from lightning_nas.functional import update_baseline
from lightning_nas.methods import (
    CARS,
    DARTS,
    ENAS,
    GDAS,
    PCDARTS,
    SMASH,
    SPOS,
    BigNAS,
    DARTSMinus,
    DrNAS,
    OnceForAll,
    Retrain,
)
from lightning_nas.ops import build_op, register_op
from lightning_nas.sampling import mutate, step_generator
from lightning_nas.search import (
    CoarseToFineSearch,
    Constraint,
    ConstraintError,
    CostModel,
    RandomSearch,
    RegularizedEvolution,
)
from lightning_nas.search.tabular import TabularBenchmark, run_budgeted_search
from lightning_nas.spaces import DartsCellSpace, ElasticMobileNetV3, NasBench201Space
from lightning_nas.spaces.nasbench201 import NasBench201Format
from tests.tiny import tiny_darts_space

REPO = Path(__file__).resolve().parents[2]
GOOD_CELL = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
CHOICES = [Choice("op", ("conv", "pool"))]


def _cli(tmp: Path, *flags: str) -> Callable[[], object]:
    return lambda: main(
        [
            "fit",
            "--config",
            str(REPO / "configs/darts/digits.yaml"),
            f"--trainer.default_root_dir={tmp}",
            f"--trainer.logger.init_args.save_dir={tmp}",
            "--trainer.max_steps=1",
            *flags,
        ]
    )


def _table(tmp: Path, text: str) -> Path:
    path = tmp / "table.csv"
    path.write_text(text)
    return path


def _cases(tmp: Path) -> list[tuple[str, Callable[[], object], type[BaseException], str]]:
    """(id, action, expected exception, text the message must contain)."""
    nb201 = NasBench201Format(("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"))
    table_csv = f"index,arch,acc,cost\n0,{GOOD_CELL},90.0,50.0\n"
    ckpt_missing = tmp / "nothing.ckpt"
    not_ckpt = tmp / "text.ckpt"  # written by the test before the action runs
    return [
        # architectures and genotypes
        ("choice-value", lambda: CHOICES[0].validate("lstm"), ValueError, "'lstm'"),
        ("arch-missing-key", lambda: validate_arch({}, CHOICES), ValueError, "op"),
        ("arch-extra-key", lambda: validate_arch({"op": "conv", "width": 3}, CHOICES), ValueError, "width"),
        ("genotype-syntax", lambda: Genotype.parse("Genotype(normal=[('sep_conv_3x3', 0)"), ValueError, "Genotype"),
        ("genotype-eval", lambda: Genotype.parse("__import__('os').system('true')"), ValueError, "__import__"),
        ("genotype-json", lambda: Genotype.from_json("{not json"), ValueError, "{not json"),
        (
            "genotype-input-range",
            lambda: Genotype.parse(
                "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 7)], normal_concat=[2],"
                " reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2])"
            ),
            ValueError,
            "('sep_conv_3x3', 7) feeds node 2",
        ),
        ("genotype-unknown-op", lambda: tiny_darts_space().activate(_bad_op_genotype()), ValueError, "conv_9x9"),
        ("arch-file-missing", lambda: load_arch(tmp / "nope.json"), FileNotFoundError, "nope.json"),
        # ops and spaces
        ("op-unknown", lambda: build_op("conv_9x9", 4, 1), ValueError, "conv_9x9"),
        (
            "op-duplicate",
            lambda: register_op("sep_conv_3x3")(lambda c, s, a: torch.nn.Identity()),
            ValueError,
            "sep_conv_3x3",
        ),
        ("space-input-shape", lambda: tiny_darts_space()(torch.randn(2, 3, 8, 8)), ValueError, "(2, 3, 8, 8)"),
        ("nb201-unknown-op", lambda: nb201.parse(GOOD_CELL.replace("none", "conv_9x9")), ValueError, "conv_9x9"),
        (
            "nb201-node-count",
            lambda: nb201.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|"),
            ValueError,
            "|+|",
        ),
        (
            "nb201-activate",
            lambda: NasBench201Space(channels=4, cells_per_stage=1).activate({**nb201.parse(GOOD_CELL), "3<-2": "x"}),
            ValueError,
            "'x'",
        ),
        # methods
        ("darts-order", lambda: DARTS(tiny_darts_space(), order="third"), ValueError, "'third'"),  # type: ignore[arg-type]
        ("darts-nan-policy", lambda: DARTS(tiny_darts_space(), nan_policy="ignore"), ValueError, "'ignore'"),  # type: ignore[arg-type]
        ("gdas-temperature", lambda: GDAS(tiny_darts_space(), tau_min=0.0), ValueError, "tau_min=0.0"),
        ("gdas-space", lambda: GDAS(_elastic()), TypeError, "ElasticMobileNetV3"),  # type: ignore[arg-type]
        ("pc-darts-channels", lambda: PCDARTS(tiny_darts_space(), partial_channels=3), ValueError, "k=3"),
        ("drnas-prior", lambda: DrNAS(tiny_darts_space(), prior=0.0), ValueError, "prior=0.0"),
        ("darts-minus-decay", lambda: DARTSMinus(tiny_darts_space(), beta_decay="step"), ValueError, "'step'"),  # type: ignore[arg-type]
        (
            "darts-minus-no-skip",
            lambda: DARTSMinus(
                DartsCellSpace(in_channels=1, channels=4, layers=3, steps=2, ops=("none", "max_pool_3x3"))
            ),
            ValueError,
            "'skip_connect'",
        ),
        ("bignas-random-subnets", lambda: BigNAS(_elastic(), num_random_subnets=-2), ValueError, "got -2"),
        ("bignas-no-teacher", lambda: BigNAS(_elastic(), teacher="none"), ValueError, "teacher='none'"),
        ("retrain-genotype", lambda: Retrain(arch="DARTS_V9"), FileNotFoundError, "DARTS_V9"),
        ("enas-policy", lambda: ENAS(tiny_darts_space(), policy="gru"), ValueError, "'gru'"),  # type: ignore[arg-type]
        ("enas-steps", lambda: ENAS(tiny_darts_space(), weight_steps=0), ValueError, "weight_steps=0"),
        ("spos-nan-policy", lambda: SPOS(tiny_darts_space(), nan_policy="ignore"), ValueError, "'ignore'"),  # type: ignore[arg-type]
        ("smash-generate", lambda: SMASH(tiny_darts_space(), generate="3x3"), ValueError, "'1x1', 'all'; got '3x3'"),  # type: ignore[arg-type]
        ("smash-nan-policy", lambda: SMASH(tiny_darts_space(), nan_policy="ignore"), ValueError, "'ignore'"),  # type: ignore[arg-type]
        ("cars-population", lambda: CARS(tiny_darts_space(), population_size=1), ValueError, "population_size=1"),
        ("ofa-space", lambda: OnceForAll(tiny_darts_space()), TypeError, "DartsCellSpace"),  # type: ignore[arg-type]
        ("ofa-phase-epochs", lambda: OnceForAll(_elastic(), phase_epochs=[1, 2, 3]), ValueError, "[1, 2, 3]"),
        ("ofa-checkpoint-phase", lambda: _ofa_checkpoint_in_phase("shrink-3"), ValueError, "'shrink-3'"),
        # data
        (
            "dataset-missing",
            lambda: FashionMNISTDataModule(root=str(tmp / "empty")).setup("fit"),
            FileNotFoundError,
            "train-images-idx3-ubyte",
        ),
        ("data-portion", lambda: SyntheticDataModule(search=True, train_portion=1.5), ValueError, "1.5"),
        ("data-batch", lambda: SyntheticDataModule(batch_size=0), ValueError, "batch_size=0"),
        # strategies and tables
        (
            "rea-sizes",
            lambda: RegularizedEvolution(CHOICES, population_size=4, sample_size=9),
            ValueError,
            "sample_size=9",
        ),
        (
            "mutate-count",
            lambda: mutate({"op": "conv"}, CHOICES, step_generator(0, 0), num_mutations=2),
            ValueError,
            "got 2",
        ),
        (
            "constraint-impossible",
            lambda: RandomSearch(CHOICES, constraints=[Constraint("params", lambda a: 5e6, 1e6)], max_tries=5).ask(),
            ConstraintError,
            "smallest found: 5e+06",
        ),
        (
            "coarse-to-fine-impossible",
            lambda: CoarseToFineSearch(
                _elastic().choices(), constraints=[CostModel(_elastic(), image_size=8).constraint("flops", 10)]
            ).ask(),
            ConstraintError,
            "flops <= 10 (smallest achievable: ",
        ),
        ("baseline-decay", lambda: update_baseline(torch.tensor(0.0), 1.0, decay=1.5), ValueError, "1.5"),
        (
            "table-column",
            lambda: TabularBenchmark.load(_table(tmp, table_csv), nb201).value(GOOD_CELL, "cifar10_valid"),
            (KeyError, ValueError),
            "acc",
        ),  # type: ignore[arg-type]
        (
            "table-budget",
            lambda: run_budgeted_search(
                RandomSearch(nb201.choices(), metric="acc"),
                TabularBenchmark.load(_table(tmp, table_csv), nb201),
                budget=1.0,
                cost_column="cost",
                report_metric="acc",
            ),
            ValueError,
            "budget 1 is smaller than the cheapest query",
        ),
        # CLI, configs and checkpoints
        ("cli-flag", _cli(tmp, "--model.arch_lrr=0.1"), SystemExit, "arch_lrr"),
        ("cli-op-in-config", _cli(tmp, "--model.space.init_args.ops=[sep_conv_3x3,conv_9x9]"), SystemExit, "conv_9x9"),
        ("cli-classes", _cli(tmp, "--model.space.init_args.num_classes=7"), ValueError, "num_classes=7"),
        ("ckpt-missing", _cli(tmp, f"--ckpt_path={ckpt_missing}"), SystemExit, "nothing.ckpt"),
        ("ckpt-not-a-checkpoint", _cli(tmp, f"--ckpt_path={not_ckpt}"), SystemExit, "text.ckpt"),
        ("export-missing", lambda: main(["export", "--ckpt_path", str(ckpt_missing)]), SystemExit, "nothing.ckpt"),
    ]


def _elastic() -> ElasticMobileNetV3:
    return ElasticMobileNetV3(in_channels=1, num_classes=4, preset="cifar", widths=(8, 8, 8, 16, 16, 24, 24, 48, 64))


def _ofa_checkpoint_in_phase(phase: str) -> None:
    """Load a checkpoint entry that names a phase this run does not have."""
    model = OnceForAll(_elastic())
    entry = {"method": "OnceForAll", "space": "ElasticMobileNetV3", "phase": phase, "phase_index": 2}
    model.on_load_checkpoint({"lightning_nas": entry, "state_dict": {}})


def _bad_op_genotype() -> Genotype:
    return Genotype.parse(
        "Genotype(normal=[('conv_9x9', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 2)],"
        " normal_concat=[2, 3], reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0),"
        " ('sep_conv_3x3', 2)], reduce_concat=[2, 3])"
    )


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


CASE_IDS = [case[0] for case in _cases(Path("/nonexistent"))]


def test_the_table_has_at_least_25_cases() -> None:
    assert len(CASE_IDS) >= 25
    assert len(set(CASE_IDS)) == len(CASE_IDS)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input(case_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "architecture.json").write_text('{"op": "conv"}\n')
    (outputs / "last.ckpt").write_bytes(b"\x00" * 64)
    before = _digest(outputs)
    (tmp_path / "text.ckpt").write_text("hello")
    _, action, error, text = next(case for case in _cases(tmp_path) if case[0] == case_id)
    with pytest.raises(error) as info:
        action()
    message = str(info.value) + capsys.readouterr().err
    assert text in message, message[-2000:]
    assert "Traceback" not in message
    assert _digest(outputs) == before
