"""The shipped recipes: found by name in the checkout and in the wheel's layout, listed, and run by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_nas.arch import Genotype
from lightning_nas.cli import main
from lightning_nas.recipes import (
    RecipeNotFoundError,
    list_recipes,
    recipe_path,
    recipes_dir,
    resolve_config,
    resolve_config_args,
)
from tests.test_cli import _QUICK

REPO = Path(__file__).resolve().parents[1]


def test_the_checkout_reads_configs_in_place() -> None:
    assert recipes_dir() == REPO / "configs"
    on_disk = sorted(p.relative_to(REPO / "configs").with_suffix("").as_posix() for p in REPO.glob("configs/**/*.yaml"))
    assert list_recipes() + list_recipes(sweeps=True) == sorted(on_disk, key=lambda n: (n.startswith("sweeps/"), n))
    assert "darts/digits" in list_recipes()
    assert all(name.startswith("sweeps/") for name in list_recipes(sweeps=True))


SPELLINGS = ["darts/digits", "darts/digits.yaml", "configs/darts/digits.yaml", "./darts/digits"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_recipe_has_several_spellings(spelling: str) -> None:
    assert recipe_path(spelling) == REPO / "configs" / "darts" / "digits.yaml"


def test_files_and_inline_yaml_are_kept_and_unknown_names_are_refused(tmp_path: Path) -> None:
    mine = tmp_path / "darts" / "digits.yaml"  # an existing file wins over the recipe of the same name
    mine.parent.mkdir()
    mine.write_text("seed_everything: 1\n")
    assert resolve_config(str(mine)) == str(mine)
    assert resolve_config("{seed_everything: 1}") == "{seed_everything: 1}"
    assert resolve_config_args(["fit", "--config=darts/digits", "--config", "enas/digits"]) == [
        "fit",
        f"--config={REPO / 'configs/darts/digits.yaml'}",
        "--config",
        str(REPO / "configs/enas/digits.yaml"),
    ]
    # LightningCLI's short flag too (before, `-c darts/digits` was read as a missing file)
    assert resolve_config_args(["fit", "-c", "darts/digits", "-c=enas/digits"]) == [
        "fit",
        "-c",
        str(REPO / "configs/darts/digits.yaml"),
        f"-c={REPO / 'configs/enas/digits.yaml'}",
    ]
    with pytest.raises(RecipeNotFoundError, match=r"'darts/digit' is neither a file nor .*closest: darts/digits"):
        recipe_path("darts/digit")
    with pytest.raises(RecipeNotFoundError, match="neither a file nor"):
        recipe_path("../setup")  # no escaping the recipes folder


def test_recipes_command_lists_and_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    for name in list_recipes() + list_recipes(sweeps=True):
        assert f"  {name} " in listing
    assert "DARTS search on scikit-learn's 8x8 digits" in listing  # the recipe's header line
    fit_part, _, rest = listing.partition("multi-trial recipes (lightning-nas trials --config NAME):")
    trials_part = rest.partition("W&B sweeps")[0]
    trials = [name for name in list_recipes() if name.startswith("trials/")]
    assert trials
    assert all(f"  {name} " in trials_part and f"  {name} " not in fit_part for name in trials)
    assert main(["recipes", "darts/digits"]) == 0
    assert capsys.readouterr().out == (REPO / "configs/darts/digits.yaml").read_text()
    assert main(["recipes", "--path", "retrain/digits"]) == 0
    assert capsys.readouterr().out.strip() == str(REPO / "configs/retrain/digits.yaml")
    with pytest.raises(SystemExit) as exit_info:
        main(["recipes", "darts/nope"])
    assert exit_info.value.code == 2
    assert "darts/nope" in capsys.readouterr().err


def test_fit_by_recipe_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--model.space.init_args.layers=3", "--model.space.init_args.channels=4", *_QUICK]
    main(["fit", "--config", "darts/digits", f"--trainer.logger.init_args.save_dir={tmp_path}", *args])
    Genotype.from_json(json.loads((tmp_path / "darts_digits" / "version_0" / "architecture.json").read_text()))
    assert main(["fit", "--config", "darts/digit"]) == 2
    assert "closest: darts/digits" in capsys.readouterr().err


def test_the_wheel_layout_ships_the_recipes(tmp_path: Path) -> None:
    """setup.py's build step copies configs/ into the package; the built package finds them without a checkout."""
    build_lib = tmp_path / "lib"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    built = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build_lib)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    shipped = build_lib / "lightning_nas" / "configs"
    assert sorted(p.relative_to(shipped) for p in shipped.rglob("*.yaml")) == sorted(
        p.relative_to(REPO / "configs") for p in REPO.glob("configs/**/*.yaml")
    )
    elsewhere = tmp_path / "elsewhere"  # no configs/ here, and the checkout is not on the path
    elsewhere.mkdir()
    found = subprocess.run(
        [sys.executable, "-m", "lightning_nas", "recipes", "--path", "configs/darts/digits.yaml"],
        cwd=elsewhere,
        env={**env, "PYTHONPATH": str(build_lib)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert found.returncode == 0, found.stderr[-3000:]
    assert Path(found.stdout.strip()) == shipped / "darts" / "digits.yaml"
