"""TabularReport: from the CLI config, and its errors (issue 9)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lightning_nas.callbacks import TabularReport
from lightning_nas.cli import main
from lightning_nas.methods import DARTS
from lightning_nas.spaces import DartsCellSpace, NasBench201Format, NasBench201Space

REPO = Path(__file__).resolve().parents[2]


def test_the_nb201_config_reports_the_table_from_the_cli(
    data_root: Path, nb201_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIGHTNING_NAS_DATA", str(data_root))  # the config names the table relative to the data root
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/darts/nb201_digits.yaml"),
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--model.space.init_args.channels=4",
            "--model.space.init_args.cells_per_stage=1",
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=2",
            "--trainer.enable_model_summary=false",
        ]
    )
    run_dir = tmp_path / "darts_nb201_digits" / "version_0"
    with (run_dir / "metrics.csv").open(newline="") as handle:
        logged = [row for row in csv.DictReader(handle) if row["tabular/cifar10_test"]]
    assert len(logged) == 1
    found = NasBench201Format().format(json.loads((run_dir / "architecture.json").read_text()))
    with nb201_path.open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["arch"] == found)
    for metric in ("cifar10_valid", "cifar10_test"):
        assert float(logged[0][f"tabular/{metric}"]) == pytest.approx(float(row[metric]), rel=1e-6)


def test_a_missing_column_or_a_space_without_strings_is_refused(data_root: Path, nb201_path: Path) -> None:
    nb201 = DARTS(NasBench201Space(in_channels=1, channels=4, cells_per_stage=1), order="first")
    with pytest.raises(ValueError, match="no numeric column 'top1'; its columns: cifar10_valid, cifar10_test, "):
        TabularReport(str(nb201_path), metrics=["top1"]).setup(None, nb201, "fit")  # type: ignore[arg-type]
    darts = DARTS(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=2), order="first")
    with pytest.raises(TypeError, match="needs a module whose space has an arch_format .* space DartsCellSpace"):
        TabularReport(str(nb201_path)).setup(None, darts, "fit")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="absent.csv' does not exist"):
        TabularReport(str(data_root / "absent.csv")).setup(None, nb201, "fit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metrics must be a non-empty list"):
        TabularReport(str(nb201_path), metrics="cifar10_test")
