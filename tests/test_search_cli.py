"""``lightning-nas search`` and ``lightning-nas lut`` as users run them, on a tiny SPOS supernet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_nas.cli import main
from lightning_nas.search import LatencyTable
from lightning_nas.spaces import DartsCellSpace

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs/spos/fashion_mnist.yaml")
TINY = [
    "--data.init_args.subset=600",
    "--model.space.init_args.channels=4",
    "--model.space.init_args.layers=2",
    "--model.space.init_args.steps=1",
]


def test_fit_then_search_writes_front_and_plot_and_lut_builds(data_root: Path, tmp_path: Path, capsys) -> None:
    main(
        [
            "fit",
            "--config",
            CONFIG,
            f"--data.init_args.root={data_root}",
            f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.max_steps=3",
            "--trainer.limit_val_batches=1",
            "--model.channels_last=false",
            "--trainer.enable_model_summary=false",
            *TINY,
        ]
    )
    checkpoint = next((tmp_path / "spos_fashion_mnist").rglob("last.ckpt"))
    common = ["--config", CONFIG, f"--data.init_args.root={data_root}", *TINY]
    out = tmp_path / "search"
    assert (
        main(
            [
                "search",
                *common,
                "--ckpt_path",
                str(checkpoint),
                "--strategy",
                "nsga2",
                "--num_evaluations",
                "8",
                "--population_size",
                "4",
                "--num_batches",
                "1",
                "--calibration_batches",
                "1",
                "--image_size",
                "28",
                "--output_dir",
                str(out),
            ]
        )
        == 0
    )
    space = DartsCellSpace(in_channels=1, channels=4, layers=2, steps=1)
    front = json.loads((out / "pareto_front.json").read_text())
    assert front
    for entry in front:
        assert space.validate_arch(entry["arch"]) == entry["arch"]
    assert space.validate_arch(json.loads((out / "best_architecture.json").read_text()))
    assert (out / "pareto_front.png").read_bytes()[:4] == b"\x89PNG"

    table = tmp_path / "lut.json"
    assert (
        main(
            [
                "lut",
                *common,
                "--output",
                str(table),
                "--image_size",
                "8",
                "--repeats",
                "2",
                "--warmup",
                "0",
                "--max_archs",
                "20",
            ]
        )
        == 0
    )
    assert "held-out arch: predicted" in capsys.readouterr().out
    assert LatencyTable.load(table).space["class"].endswith("DartsCellSpace")

    with pytest.raises(SystemExit) as exit_info:  # nothing is that fast: the message names the best value found
        main(
            [
                "search",
                *common,
                "--ckpt_path",
                str(checkpoint),
                "--latency_table",
                str(table),
                "--max_latency_ms=-1e9",  # impossible even if the fitted overhead comes out negative
                "--num_evaluations",
                "2",
                "--output_dir",
                str(out),
            ]
        )
    assert exit_info.value.code == 2
    assert "latency_ms <= -1e+09 (smallest found:" in capsys.readouterr().err


def test_bad_flags_are_named(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["search", "--config", CONFIG, "--ckpt_path", "x.ckpt", "--strategy", "annealing"])
    assert "argument --strategy: invalid choice: 'annealing'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", "--config", CONFIG, "--evaluator", "os:path", "--num_evaluations", "0"])
    assert "--num_evaluations must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lut", "--config", CONFIG])
    assert "--output" in capsys.readouterr().err
