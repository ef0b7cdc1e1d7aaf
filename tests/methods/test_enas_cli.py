"""ENAS through the ``lightning-nas`` command: shipped configs, search -> export -> retrain for micro and macro."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_nas.arch import Genotype
from lightning_nas.cli import NASCLI, main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "enas").glob("*.yaml"))
_QUICK = ["--trainer.max_steps=3", "--trainer.limit_val_batches=2", "--trainer.enable_model_summary=false"]
_TINY = [
    "--model.space.init_args.layers=3",
    "--model.space.init_args.channels=4",
    "--model.weight_steps=2",
    "--model.controller_steps=2",
    "--model.controller_samples=2",
    "--model.derive_samples=2",
]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_enas_configs_build(config: Path, tmp_path: Path) -> None:
    cli = NASCLI(args=["--config", str(config), f"--trainer.default_root_dir={tmp_path}"], run=False)
    space = cli.model.space
    assert (space.num_classes, space.in_channels) == (cli.datamodule.num_classes, cli.datamodule.in_channels)


def test_micro_search_export_retrain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "configs/enas/digits.yaml")
    main(["fit", "--config", config, f"--trainer.logger.init_args.save_dir={tmp_path}", *_TINY, *_QUICK])
    run_dir = tmp_path / "enas_digits" / "version_0"
    found = Genotype.from_json(json.loads((run_dir / "architecture.json").read_text()))
    exported = tmp_path / "genotype.json"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert main(["export", "--ckpt_path", str(checkpoint), "--output", str(exported)]) == 0
    assert Genotype.from_json(exported.read_text()) == found
    assert f"ENAS on DartsCellSpace: {found}" in capsys.readouterr().out
    retrain = str(REPO / "configs/retrain/digits.yaml")
    main(
        [
            "fit",
            "--config",
            retrain,
            f"--model.arch={exported}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--model.layers=3",
            *_QUICK,
        ]
    )
    assert Genotype.from_json((tmp_path / "retrain_digits/version_0/architecture.json").read_text()) == found


def test_macro_search_export_retrain(tmp_path: Path) -> None:
    main([
        "fit", "--config", str(REPO / "configs/enas/digits.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--model.space=lightning_nas.spaces.EnasMacroSpace", "--model.space.init_args.in_channels=1",
        "--model.space.init_args.layers=3", "--model.space.init_args.channels=4", "--model.skip_weight=0.8",
        "--model.weight_steps=2", "--model.controller_steps=2", "--model.controller_samples=2",
        "--model.derive_samples=2", *_QUICK,
    ])  # fmt: skip
    run_dir = tmp_path / "enas_digits" / "version_0"
    exported = tmp_path / "macro.json"
    assert main(["export", "--ckpt_path", str(run_dir / "checkpoints/last.ckpt"), "--output", str(exported)]) == 0
    arch = json.loads(exported.read_text())
    assert set(arch) == {"layer0/op", "layer1/op", "layer1/skip0", "layer2/op", "layer2/skip0", "layer2/skip1"}
    main([
        "fit", "--model=lightning_nas.methods.RetrainMacro", f"--model.arch={exported}", "--model.in_channels=1",
        "--model.channels=4", "--data=lightning_nas.data.DigitsDataModule", f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false", *_QUICK,
    ])  # fmt: skip
