"""``lightning-nas search`` and ``lightning-nas lut`` as users run them, on a tiny SPOS supernet."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightning_nas.cli import main
from lightning_nas.search import LatencyTable
from lightning_nas.spaces import DartsCellSpace, NasBench201Format

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs/spos/fashion_mnist.yaml")
TINY = [
    "--data.init_args.subset=600",
    "--model.space.init_args.channels=4",
    "--model.space.init_args.layers=2",
    "--model.space.init_args.steps=1",
]


@pytest.fixture(scope="module")
def supernet(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last checkpoint of a tiny SPOS supernet trained for 3 steps on Fashion-MNIST."""
    root = tmp_path_factory.mktemp("fit")
    main(
        [
            "fit",
            "--config",
            CONFIG,
            f"--data.init_args.root={data_root}",
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}",
            "--trainer.max_steps=3",
            "--trainer.limit_val_batches=2",
            "--model.channels_last=false",
            "--trainer.enable_model_summary=false",
            *TINY,
        ]
    )
    return next((root / "spos_fashion_mnist").rglob("last.ckpt"))


def test_fit_then_search_writes_front_and_plot_and_lut_builds(
    supernet: Path, data_root: Path, tmp_path: Path, capsys
) -> None:
    checkpoint = supernet
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
                str(tmp_path / "latency"),
            ]
        )
    assert exit_info.value.code == 2
    assert "latency_ms <= -1e+09 (smallest found:" in capsys.readouterr().err


def test_search_reads_the_runs_own_config_and_names_a_supernet_of_another_shape(
    supernet: Path, data_root: Path, tmp_path: Path, capsys
) -> None:
    """A run's saved config.yaml also holds fit's ckpt_path, which the search's parser refused ('Option ckpt_path
    is not accepted'); the shipped recipe without the run's overrides failed with every tensor's size mismatch."""
    saved = supernet.parents[1] / "config.yaml"
    assert "ckpt_path" in yaml.safe_load(saved.read_text())
    flags = ["--ckpt_path", str(supernet), "--num_evaluations", "2", "--num_batches", "1", "--calibration_batches", "1"]
    out = tmp_path / "search"
    assert main(["search", "--config", str(saved), *flags, "--image_size", "28", "--output_dir", str(out)]) == 0
    space = DartsCellSpace(in_channels=1, channels=4, layers=2, steps=1)  # the overrides the run was trained with
    assert space.validate_arch(json.loads((out / "best_architecture.json").read_text()))
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["search", "--config", CONFIG, f"--data.init_args.root={data_root}", *flags, "--output_dir", str(tmp_path)]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "holds a supernet of another shape than --config" in err
    assert "tensors missing from the checkpoint, e.g. space.cells." in err
    assert "tensors of another shape, e.g. space.alpha_normal" in err  # 1 node of 4 ops, not 4 nodes of 8
    assert len(err.splitlines()) == 1


def test_search_on_two_processes_equals_one_process(supernet: Path, data_root: Path, tmp_path: Path) -> None:
    """Launched with torchrun on 2 CPU processes, each rank scores its half of the held batches; the summed counts
    give the same accuracy for every architecture as one process scoring all of them, and only rank 0 writes."""
    flags = [
        "search",
        "--config",
        CONFIG,
        f"--data.init_args.root={data_root}",
        *TINY,
        "--ckpt_path",
        str(supernet),
        "--strategy",
        "evolution",
        "--population_size",
        "3",
        "--num_evaluations",
        "6",
        "--num_batches",
        "4",
        "--calibration_batches",
        "1",
        "--image_size",
        "28",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run = subprocess.run(
        [*launcher, "-m", "lightning_nas", *flags, "--output_dir", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("Pareto front of") == 1  # rank 1 wrote and printed nothing
    assert main([*flags, "--output_dir", str(tmp_path / "one")]) == 0
    one, two = (json.loads((tmp_path / name / "history.json").read_text()) for name in ("one", "two"))
    assert [t["arch"] for t in two] == [t["arch"] for t in one]  # evolution followed the same accuracies
    assert [t["metrics"]["accuracy"] for t in two] == [t["metrics"]["accuracy"] for t in one]
    assert [t["metrics"]["loss"] for t in two] == pytest.approx([t["metrics"]["loss"] for t in one], rel=1e-5)


def test_search_a_tabular_benchmark(nb201_path: Path, tmp_path: Path, capsys) -> None:
    """`search --table`: the NAS-Bench-201 space of a DARTS config, looked up in the 12-epoch table."""
    config = str(REPO / "configs/darts/nb201_cifar10.yaml")
    flags = ["search", "--config", config, "--table", str(nb201_path), "--strategy", "evolution", "--image_size", "32"]
    out = tmp_path / "table"
    assert main([*flags, "--table_metric", "cifar10_valid", "--num_evaluations", "40", "--output_dir", str(out)]) == 0
    with nb201_path.open(newline="") as handle:
        rows = {row["arch"]: row for row in csv.DictReader(handle)}
    fmt = NasBench201Format()
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 40
    for trial in history:  # every score is the table's own value for that cell
        row = rows[fmt.format(trial["arch"])]
        assert trial["metrics"]["accuracy"] == float(row["cifar10_valid"])
        assert trial["metrics"]["cifar10_test"] == float(row["cifar10_test"])
    best = json.loads((out / "best_architecture.json").read_text())
    assert float(rows[fmt.format(best)]["cifar10_valid"]) == max(t["metrics"]["accuracy"] for t in history)

    with pytest.raises(SystemExit):  # the same --output_dir again: the results are kept
        main([*flags, "--table_metric", "cifar10_valid", "--num_evaluations", "4", "--output_dir", str(out)])
    assert "holds an earlier search's best_architecture.json, pareto_front.json" in capsys.readouterr().err
    assert len(json.loads((out / "history.json").read_text())) == 40
    assert (
        main(
            [
                *flags,
                "--table_metric",
                "cifar10_valid",
                "--num_evaluations",
                "4",
                "--output_dir",
                str(out),
                "--overwrite",
            ]
        )
        == 0
    )
    assert len(json.loads((out / "history.json").read_text())) == 4

    with pytest.raises(SystemExit):
        main([*flags, "--table_metric", "cifar10_accuracy", "--output_dir", str(tmp_path / "other")])
    assert "no numeric column 'cifar10_accuracy'; its columns: cifar10_valid, cifar10_test" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", "--config", CONFIG, "--table", str(nb201_path), "--table_metric", "cifar10_valid"])
    assert "--table needs a space whose architectures the table spells" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["bananas", "pnas"])
def test_predictor_guided_strategies_search_a_table_as_in_process(name: str, nb201_path: Path, tmp_path: Path) -> None:
    """`search --strategy bananas|pnas`: the CLI asks and tells the same strategy the Python API builds, so its
    history equals an in-process loop over the table with the same seed, and every score is the table's."""
    from lightning_nas.search import Bananas, ProgressiveSearch

    out = tmp_path / name
    config = str(REPO / "configs/darts/nb201_cifar10.yaml")
    flags = ["--table", str(nb201_path), "--table_metric", "cifar10_valid", "--num_evaluations", "24"]
    assert main(["search", "--config", config, *flags, "--strategy", name, "--output_dir", str(out)]) == 0
    history = json.loads((out / "history.json").read_text())
    with nb201_path.open(newline="") as handle:
        valid = {row["arch"]: float(row["cifar10_valid"]) for row in csv.DictReader(handle)}
    fmt = NasBench201Format()
    strategy = (Bananas if name == "bananas" else ProgressiveSearch)(fmt.choices(), seed=0)
    for _ in range(24):
        arch = strategy.ask()
        strategy.tell(arch, {"accuracy": valid[fmt.format(arch)]})
    assert [fmt.format(t["arch"]) for t in history] == [fmt.format(t.arch) for t in strategy.history]
    assert [t["metrics"]["accuracy"] for t in history] == [valid[fmt.format(t["arch"])] for t in history]


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


def test_lut_refuses_an_output_it_would_replace_or_cannot_write_before_timing(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lightning_nas._search_cli as search_cli

    monkeypatch.setattr(search_cli, "_build", lambda *a: pytest.fail("the space was built (and timed)"))
    (tmp_path / "lut.json").write_text("{}")
    for output, message in ((tmp_path, "is a directory"), (tmp_path / "lut.json", "exists; pass --overwrite")):
        with pytest.raises(SystemExit) as exit_info:
            main(["lut", "--config", CONFIG, "--output", str(output)])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "lut.json").read_text() == "{}"


def test_ctrl_c_writes_what_the_search_evaluated_so_far(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results were written only at the end: Ctrl-C in a long search lost every evaluation."""
    (tmp_path / "stops_on_third.py").write_text(
        "calls = []\n"
        "def evaluate(arch):\n"
        "    calls.append(arch)\n"
        "    if len(calls) == 3:\n"
        "        raise KeyboardInterrupt\n"
        "    return {'accuracy': float(len(calls))}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "search"
    flags = ["--evaluator", "stops_on_third:evaluate", "--num_evaluations", "50", "--output_dir", str(out)]
    assert main(["search", "--config", CONFIG, *TINY, *flags]) == 130
    assert "interrupted after 2 of 50 evaluations" in capsys.readouterr().err
    history = json.loads((out / "history.json").read_text())
    assert [trial["metrics"]["accuracy"] for trial in history] == [1.0, 2.0]
    assert json.loads((out / "best_architecture.json").read_text()) == history[1]["arch"]
