"""Every W&B sweep file in configs/sweeps runs: parameters drawn as the agent draws them, the command line built as
``wandb agent`` builds it, run to completion offline with a tiny budget (issue 7).

A new ``configs/sweeps/*.yaml`` is picked up automatically. To keep its run tiny, add flags that shrink its
method's model to ``TINY_MODEL`` (optional: without them the recipe's model runs for the same few steps).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from wandb.sdk.launch.sweeps import utils as sweep_utils  # what `wandb agent` builds its command line with

from lightning_nas.cli import main

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
DRAWS_PER_FILE = {"darts.yaml": 2}  # two runs check that runs do not collide; one run each for the others

TINY_MODEL: dict[str, list[str]] = {
    "DARTS": ["--model.space.init_args.channels=4", "--model.space.init_args.layers=3"],
    "ENAS": [
        "--model.space.init_args.channels=4",
        "--model.space.init_args.layers=3",
        "--model.derive_samples=2",
        "--model.hidden_size=16",
    ],
    "BigNAS": [
        "--model.space.init_args.widths=[8,8,8,8,8,8,8,16,16]",
        "--model.space.init_args.resolutions=[12,16]",
        "--model.calibration_images=32",
        "--data.subset=32",  # one epoch of 2 steps: the budget's run ends with a validation, which logs val/min/acc
    ],
}


def _budget(save_dir: Path) -> list[str]:
    return [
        "--trainer.max_steps=2",
        "--trainer.limit_val_batches=2",  # not 1: the CLI reads 1 as the float 1.0, i.e. every batch
        "--trainer.enable_model_summary=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        "--data.subset=64",
        "--data.batch_size=16",
    ]


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _recipe(spec: dict[str, Any]) -> Path:
    command = spec["command"]
    return REPO / command[command.index("--config") + 1]


def _draw(parameter: dict[str, Any], rng: random.Random) -> Any:
    """One value of a parameter, as the W&B sweep controller draws it (random and bayes search)."""
    if "value" in parameter:
        return parameter["value"]
    if "values" in parameter:
        return rng.choices(parameter["values"], weights=parameter.get("probabilities"))[0]
    kind = parameter.get("distribution")
    low, high = parameter.get("min"), parameter.get("max")
    draws = {
        "uniform": lambda: rng.uniform(low, high),
        "log_uniform_values": lambda: math.exp(rng.uniform(math.log(low), math.log(high))),
        "log_uniform": lambda: math.exp(rng.uniform(low, high)),
        "int_uniform": lambda: rng.randint(low, high),
        "normal": lambda: rng.gauss(parameter.get("mu", 0.0), parameter.get("sigma", 1.0)),
    }
    if kind not in draws:
        pytest.fail(f"sweep parameter {parameter} uses distribution {kind!r}; teach _draw about it")
    return draws[kind]()


def _parameter_sets(spec: dict[str, Any], count: int, seed: int = 0) -> list[dict[str, Any]]:
    parameters = spec["parameters"]
    if spec["method"] == "grid":  # the grid, in order; the first and the last points
        names = list(parameters)
        grid = [[p["value"]] if "value" in p else p["values"] for p in parameters.values()]
        points = [dict(zip(names, values)) for values in itertools.product(*grid)]
        return [points[0], points[-1]][: min(count, len(points))]
    rng = random.Random(seed)
    return [{name: _draw(p, rng) for name, p in parameters.items()} for _ in range(count)]


def _agent_command(spec: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """The command ``wandb agent`` runs, built with wandb's own helpers as in ``wandb_agent.Agent._command_run``."""
    command = sweep_utils.create_sweep_command(spec["command"])
    sweep_vars = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    argv: list[str] = []
    for token in map(str, command):
        if token.startswith("${") and token.endswith("}"):
            argv += sweep_vars.get(token[2:-1]) or []
        else:
            argv.append(token)
    return argv


def test_sweep_files_exist() -> None:
    assert [path.name for path in SWEEPS if path.name == "darts.yaml"] == ["darts.yaml"]


@pytest.mark.parametrize("sweep", SWEEPS, ids=[path.name for path in SWEEPS])
def test_sweep_file_is_a_valid_wandb_sweep(sweep: Path) -> None:
    spec = _load(sweep)
    assert spec["method"] in ("grid", "random", "bayes")
    assert spec["metric"]["goal"] in ("maximize", "minimize")
    assert spec["metric"]["name"]
    assert spec["command"][:3] == ["lightning-nas", "fit", "--config"]
    assert spec["command"][4:] == ["${args}"]
    assert _recipe(spec).is_file(), _recipe(spec)
    for name, parameter in spec["parameters"].items():
        kinds = {"value", "values", "distribution"} & set(parameter)
        assert len(kinds) == 1, f"{name}: give exactly one of value, values, distribution"
        if spec["method"] == "grid":
            assert "distribution" not in parameter, f"{name}: grid search needs value or values"


@pytest.mark.parametrize("sweep", SWEEPS, ids=[path.name for path in SWEEPS])
def test_sweep_runs_offline(sweep: Path, tmp_path: Path, data_root: Path) -> None:
    spec = _load(sweep)
    model_class = str(yaml.safe_load(_recipe(spec).read_text())["model"]["class_path"]).rpartition(".")[2]
    program = shutil.which("lightning-nas")
    launcher = [program] if program else [sys.executable, "-m", "lightning_nas"]  # the same entry point
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "LIGHTNING_NAS_DATA": str(data_root),
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_DIR": str(tmp_path),
        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
        "WANDB_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_DATA_DIR": str(tmp_path / "data"),
        "WANDB_PROJECT": "sweep",
        "PYTHONWARNINGS": "ignore",
    }
    draws = DRAWS_PER_FILE.get(sweep.name, 1)
    for values in _parameter_sets(spec, draws):
        argv = _agent_command(spec, values)
        assert argv[:5] == [*spec["command"][:4], f"--{next(iter(values))}={next(iter(values.values()))}"]
        budget = _budget(tmp_path / "runs") + TINY_MODEL.get(model_class, [])
        done = subprocess.run(
            launcher + argv[1:] + budget, cwd=REPO, env=env, capture_output=True, text=True, timeout=400, check=False
        )
        assert done.returncode == 0, f"{argv}\n{done.stderr[-4000:]}"

    configs = sorted((tmp_path / "runs").rglob("config.yaml"))
    assert len(configs) == draws  # one directory per run: the second run did not collide with the first
    runs = sorted((tmp_path / "runs" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == draws
    for run in runs:
        assert spec["metric"]["name"].encode() in run.read_bytes()  # the metric the sweep optimises was logged
    saved = [yaml.safe_load(path.read_text()) for path in configs]
    for values in _parameter_sets(spec, draws):  # each drawn set reached one run's config
        assert any(all(_same(_lookup(config, k), v) for k, v in values.items()) for config in saved), values


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    """``model.arch_lr`` in a saved LightningCLI config (through ``init_args``; a class as its short name)."""
    node: Any = config
    for part in dotted.split("."):
        if part not in node and "init_args" in node:
            node = node["init_args"]
        node = node[part]
    return node["class_path"].rpartition(".")[2] if isinstance(node, dict) and "class_path" in node else node


def _same(saved: Any, drawn: Any) -> bool:
    if isinstance(drawn, float):
        return math.isclose(saved, drawn, rel_tol=1e-9)
    return bool(saved == drawn)


def test_unknown_sweep_parameter_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _load(REPO / "configs" / "sweeps" / "darts.yaml")
    spec["parameters"]["model.alpha_learning_rate"] = {"values": [0.01]}
    values = _parameter_sets(spec, 1)[0]
    argv = _agent_command(spec, values)
    with pytest.raises(SystemExit) as exit_info:
        main([*argv[1:], f"--trainer.logger.init_args.save_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert "alpha_learning_rate" in capsys.readouterr().err
