"""``lightning-nas proxies``: scores a config's space on its data, writes the CSV, correlates with a table."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from lightning_nas.cli import main
from lightning_nas.search import TabularBenchmark
from lightning_nas.spaces import NasBench201Format

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "darts" / "nb201_digits.yaml")


def test_proxies_command_writes_scores_and_rank_correlations(
    tmp_path: Path, nb201_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.csv"
    argv = ["proxies", "--config", CONFIG, "--num_archs", "4", "--out", str(out), "--proxies", "params", "synflow"]
    assert main([*argv, "--table", str(nb201_path), "--trainer.logger=false"]) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert list(rows[0]) == ["arch", "params", "synflow"]
    table = TabularBenchmark.load(nb201_path, NasBench201Format())
    for row in rows:
        table.row(row["arch"])  # every row names a cell of the table
        assert math.isfinite(float(row["synflow"]))
    printed = capsys.readouterr().out
    assert "| params |" in printed
    assert "| synflow |" in printed
    with pytest.raises(SystemExit):
        main(["proxies", "--config", CONFIG, "--num_archs", "1", "--out", str(out), "--proxies", "fisherr"])
    assert "unknown proxies ['fisherr']" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # before, only the data-root path it also tried was named
        main(["proxies", "--config", CONFIG, "--num_archs", "1", "--out", str(out), "--table", "nope.csv"])
    assert "--table 'nope.csv' is neither a file here nor under the data root" in capsys.readouterr().err
