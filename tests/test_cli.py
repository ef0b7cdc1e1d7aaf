"""The ``lightning-nas`` command as users run it: configs, search -> export -> retrain, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from lightning_nas.arch import Genotype
from lightning_nas.cli import NASCLI, main

REPO = Path(__file__).resolve().parents[1]
# sweeps: tests/test_sweeps.py; multi-trial recipes (not LightningCLI configs): tests/trials/test_cli.py
CONFIGS = sorted(c for c in (REPO / "configs").rglob("*.yaml") if not {"sweeps", "trials"} & set(c.parts))

_QUICK = ["--trainer.max_steps=3", "--trainer.limit_val_batches=2", "--trainer.enable_model_summary=false"]


def _search_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        str(REPO / "configs/darts/digits.yaml"),
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--model.order=first",
        "--model.space.init_args.layers=3",
        "--model.space.init_args.channels=4",
        *_QUICK,
        *extra,
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO)) for c in CONFIGS])
def test_every_shipped_config_builds(config: Path, tmp_path: Path) -> None:
    cli = NASCLI(args=["--config", str(config), f"--trainer.default_root_dir={tmp_path}"], run=False)
    model_classes = model_channels = None
    if hasattr(cli.model, "space"):
        model_classes, model_channels = cli.model.space.num_classes, cli.model.space.in_channels
    else:
        model_classes, model_channels = cli.model.hparams["num_classes"], cli.model.hparams["in_channels"]
    assert (model_classes, model_channels) == (cli.datamodule.num_classes, cli.datamodule.in_channels)


def test_search_export_retrain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(_search_args(tmp_path))
    out = capsys.readouterr().err + capsys.readouterr().out
    run_dir = tmp_path / "darts_digits" / "version_0"
    found = Genotype.from_json(json.loads((run_dir / "architecture.json").read_text()))
    checkpoint = next((run_dir / "checkpoints").glob("last.ckpt"))

    exported = tmp_path / "genotype.json"
    assert main(["export", "--ckpt_path", str(checkpoint), "--output", str(exported)]) == 0
    assert Genotype.from_json(exported.read_text()) == found
    assert str(found) in capsys.readouterr().out

    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/retrain/digits.yaml"),
            f"--model.arch={exported}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--model.layers=3",
            *_QUICK,
        ]
    )
    retrained = Genotype.from_json((tmp_path / "retrain_digits" / "version_0" / "architecture.json").read_text())
    assert retrained == found
    del out


def test_repeated_runs_in_one_directory(tmp_path: Path) -> None:
    for _ in range(2):
        main(_search_args(tmp_path, "--trainer.max_steps=1"))
    assert sorted(p.name for p in (tmp_path / "darts_digits").iterdir()) == ["version_0", "version_1"]


def test_export_refuses_to_overwrite_and_reads_bad_checkpoints(tmp_path: Path) -> None:
    main(_search_args(tmp_path, "--trainer.max_steps=1"))
    checkpoint = next((tmp_path / "darts_digits" / "version_0" / "checkpoints").glob("*.ckpt"))
    target = tmp_path / "mine.json"
    target.write_text("precious")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(checkpoint), "--output", str(target)])
    assert exit_info.value.code == 2
    assert target.read_text() == "precious"

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(truncated)])
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(tmp_path / "absent.ckpt")])


def test_unknown_flag_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(_search_args(tmp_path, "--model.learning_rate_of_alphas=3"))
    assert exit_info.value.code == 2
    assert "learning_rate_of_alphas" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.space.init_args.ops=[none,sep_conv_9x9]"], "ValueError: unknown op 'sep_conv_9x9'; registered ops"),
        (
            ["fit", "--config", str(REPO / "configs/retrain/digits.yaml"), "--model.arch=DARTS_V3"],
            "FileNotFoundError: arch 'DARTS_V3' is not a file, a genotype string or JSON, nor a published genotype",
        ),
    ],
)
def test_a_value_a_class_refuses_is_one_line_naming_it(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The constructor's message came after two tracebacks and inside jsonargparse's 'Does not validate against any
    of the Union subtypes'."""
    with pytest.raises(SystemExit) as exit_info:
        main(args if args[0] == "fit" else _search_args(tmp_path, *args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"lightning-nas fit: error: {message}" in err
    assert "Traceback" not in err
    assert "Union" not in err


def test_console_script_runs() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}  # this checkout, whatever the cwd
    result = subprocess.run(
        [sys.executable, "-m", "lightning_nas", "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "fit" in result.stdout
    assert "export" in result.stdout


def test_the_command_leaves_out_the_leafspec_deprecation_only(capsys: pytest.CaptureFixture[str]) -> None:
    """Lightning builds torch's ``LeafSpec`` on every fit; the FutureWarning torch gives it is not the user's to act
    on, so the command filters exactly that warning and no other."""
    from torch.utils._pytree import LeafSpec

    with warnings.catch_warnings(record=True) as before:
        warnings.simplefilter("always")
        LeafSpec()
    assert any("LeafSpec" in str(w.message) for w in before)  # the control: torch does warn
    with warnings.catch_warnings(record=True) as after:
        warnings.simplefilter("always")
        assert main(["recipes"]) == 0
        LeafSpec()
        warnings.warn("another deprecation", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in after] == ["another deprecation"]
    capsys.readouterr()


def test_fast_dev_run_writes_no_run_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's fast_dev_run turns off loggers and checkpoints; the architecture file, its history and pictures,
    the config and the interrupt checkpoint went to the working directory instead (each run replacing the last)."""
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(REPO / "configs/darts/digits.yaml"), "--trainer.fast_dev_run=1"]
    main([*args, "--model.space.init_args.layers=3", "--model.space.init_args.channels=4", "--model.order=first"])
    written = {str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file()}
    # Lightning 2.6's ModelCheckpoint(save_last=True) still writes checkpoints/last.ckpt at train end: its own
    assert not written - {"checkpoints/last.ckpt"}


def test_a_run_lightning_refuses_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`test` of a supernet method (no test step) ended in Lightning's MisconfigurationException traceback."""
    tiny = ["--model.space.init_args.channels=4", "--model.space.init_args.layers=3", "--data.init_args.subset=64"]
    args = ["test", "--config", str(REPO / "configs/spos/fashion_mnist.yaml"), *tiny]
    assert main([*args, f"--trainer.logger.init_args.save_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "lightning-nas test: error: No `test_step()` method defined to run `Trainer.test`." in err
    assert "Traceback" not in err
