"""``lightning-nas trials``: the shipped recipes build their space and strategy; bad recipes are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_nas.cli import main
from lightning_nas.search import Bananas, PolicySearch, ProgressiveSearch
from lightning_nas.trials._cli import _instantiate, build_loggers, build_strategy, run_recipe

RECIPES = Path(__file__).resolve().parents[2] / "configs" / "trials"


@pytest.mark.parametrize("name", ["nasrl_digits.yaml", "nasrl_darts_cifar10.yaml"])
def test_shipped_recipes_build_a_controller_over_their_space(name: str) -> None:
    recipe = yaml.safe_load((RECIPES / name).read_text())
    space = _instantiate(recipe["space"], "space")
    strategy = build_strategy(recipe["strategy"], space, 0, "accuracy")
    assert isinstance(strategy, PolicySearch)
    assert [c.name for c in strategy.choices] == [c.name for c in space.choices()]
    assert space.validate_arch(strategy.ask())


@pytest.mark.parametrize(("name", "cls"), [("bananas", Bananas), ("pnas", ProgressiveSearch)])
def test_predictor_guided_strategies_run_as_trials_strategies(name: str, cls: type) -> None:
    recipe = yaml.safe_load((RECIPES / "nasrl_digits.yaml").read_text())
    space = _instantiate(recipe["space"], "space")
    strategy = build_strategy({"name": name, "options": {"predictor": "ridge"}}, space, 0, "accuracy")
    assert type(strategy) is cls
    assert strategy.predictor_name == "ridge"
    assert space.validate_arch(strategy.ask())


def test_unknown_strategy_and_keys_are_refused() -> None:
    recipe = yaml.safe_load((RECIPES / "nasrl_digits.yaml").read_text())
    valid = "random, evolution, nsga2, reinforce, nasrl, bananas, pnas"
    with pytest.raises(ValueError, match=f"strategy.name must be one of {valid}"):
        run_recipe({**recipe, "strategy": {"name": "bayes"}})
    with pytest.raises(ValueError, match=r"unknown recipe keys \['epochs'\]"):
        run_recipe({**recipe, "epochs": 3})


def test_cli_refuses_a_missing_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trials", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml' is neither a file nor a shipped recipe" in capsys.readouterr().err


def test_recipe_loggers_default_to_the_experiment_directory(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    spec = [
        {"class_path": "lightning.pytorch.loggers.CSVLogger"},
        {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": str(tmp_path / "tb")}},
    ]
    csv_logger, tb_logger = build_loggers(spec, tmp_path / "run")
    assert isinstance(csv_logger, CSVLogger)
    assert isinstance(tb_logger, TensorBoardLogger)
    assert (Path(csv_logger.save_dir), Path(tb_logger.save_dir)) == (tmp_path / "run" / "logs", tmp_path / "tb")
    assert build_loggers(None, tmp_path) == []
    (single,) = build_loggers({"class_path": "lightning.pytorch.loggers.CSVLogger"}, tmp_path)
    assert isinstance(single, CSVLogger)


def test_recipe_loggers_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"logger class_path 'lightning_nas.search.RandomSearch' is not a lightning"):
        build_loggers({"class_path": "lightning_nas.search.RandomSearch"}, tmp_path)
    with pytest.raises(ValueError, match="logger must be a mapping with class_path"):
        build_loggers(["csv"], tmp_path)
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    with pytest.raises(RuntimeError, match="no W&B login was found.*WANDB_MODE=offline"):
        build_loggers({"class_path": "lightning.pytorch.loggers.WandbLogger"}, tmp_path)
