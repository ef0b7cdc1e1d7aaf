"""``lightning-nas trials``: the shipped recipes build their space and strategy; bad recipes are refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lightning_nas.cli import main
from lightning_nas.search import Bananas, PolicySearch, ProgressiveSearch
from lightning_nas.trials import LightningTrial, RetrainFactory
from lightning_nas.trials._cli import (
    STRATEGY_NAMES,
    _instantiate,
    build_loggers,
    build_strategy,
    plan_recipe,
    run_recipe,
)

RECIPES = Path(__file__).resolve().parents[2] / "configs" / "trials"
EXPECTED_CLASS = {  # the lightning_nas.search class each recipe name stands for
    "random": "RandomSearch",
    "evolution": "RegularizedEvolution",
    "nsga2": "NSGA2",
    "reinforce": "ReinforceSearch",
    "nasrl": "PolicySearch",
    "bananas": "Bananas",
    "pnas": "ProgressiveSearch",
}


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


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_strategy_name_builds_its_strategy(name: str) -> None:
    recipe = yaml.safe_load((RECIPES / "nasrl_digits.yaml").read_text())
    space = _instantiate(recipe["space"], "space")
    strategy = build_strategy({"name": name}, space, 0, "accuracy")
    assert type(strategy).__name__ == EXPECTED_CLASS[name]
    assert space.validate_arch(strategy.ask())


def test_unknown_strategy_and_keys_are_refused() -> None:
    recipe = yaml.safe_load((RECIPES / "nasrl_digits.yaml").read_text())
    valid = "random, evolution, nsga2, reinforce, nasrl, bananas, pnas"
    with pytest.raises(ValueError, match=f"strategy.name must be one of {valid}"):
        run_recipe({**recipe, "strategy": {"name": "bayes"}})
    with pytest.raises(ValueError, match=r"unknown recipe keys \['epochs'\]"):
        run_recipe({**recipe, "epochs": 3})


def _digits_recipe(tmp_path: Path) -> dict:
    recipe = yaml.safe_load((RECIPES / "nasrl_digits.yaml").read_text())
    return {**recipe, "directory": str(tmp_path / "run")}


@pytest.mark.parametrize("name", ["nasrl_digits.yaml", "nasrl_darts_cifar10.yaml"])
def test_shipped_recipes_pass_the_checks(name: str, tmp_path: Path) -> None:
    recipe = {**yaml.safe_load((RECIPES / name).read_text()), "directory": str(tmp_path / "run")}
    plan = plan_recipe(recipe)
    assert plan.trial.max_epochs == recipe["trial"]["max_epochs"]
    assert plan.trial.factory.options == recipe["trial"]["retrain"]  # type: ignore[attr-defined]


# A misspelt key at each level of a recipe (the shipped digits recipe with one change), and what the error names.
MISSPELT = {
    "recipe": ({"num_trial": 3}, r"unknown recipe keys \['num_trial'\]; valid recipe keys: .*num_trials"),
    "trial": (
        {"trial": {"max_epoch": 5}},
        r"unknown trial keys \['max_epoch'\]; valid trial keys: max_epochs, max_steps, input_shape",
    ),
    "trial.trainer": (
        {"trial": {"trainer": {"limit_train_batchs": 2}}},
        r"unknown trial.trainer keys \['limit_train_batchs'\]; valid trial.trainer keys: .*limit_train_batches",
    ),
    "trial.retrain": (
        {"trial": {"retrain": {"lrr": 0.1}}},
        r"unknown trial.retrain keys \['lrr'\]; valid trial.retrain keys: in_channels, .*\blr\b",
    ),
    "strategy": ({"strategy": {"name": "nasrl", "option": {}}}, r"unknown strategy keys \['option'\]; .*name, options"),
    "strategy.options": (
        {"strategy": {"name": "nasrl", "options": {"batch_sise": 4}}},
        r"unknown strategy.options keys \['batch_sise'\]; valid strategy.options keys: policy, batch_size",
    ),
    "strategy.options given by the recipe": (
        {"strategy": {"name": "evolution", "options": {"seed": 4}}},
        r"unknown strategy.options keys \['seed'\]; valid strategy.options keys: population_size",
    ),
    "reward": ({"reward": {"target": 1e4, "costs": "flops"}}, r"unknown reward keys \['costs'\]; .*target, cost, hard"),
    "reward without target": ({"reward": {"cost": "flops"}}, r"reward needs target"),
    "data": ({"data": {"class_path": "lightning_nas.data.DigitsDataModule", "init_arg": {}}}, r"unknown data keys"),
    "data.init_args": (
        {"data": {"class_path": "lightning_nas.data.DigitsDataModule", "init_args": {"subsett": 10}}},
        r"unknown data init_args \['subsett'\]; valid data init_args: .*\bsubset\b",
    ),
    "space.init_args": (
        {"space": {"class_path": "lightning_nas.spaces.DartsCellSpace", "init_args": {"chanels": 4}}},
        r"unknown space init_args \['chanels'\]; valid space init_args: in_channels, num_classes, channels",
    ),
    "logger": (
        {"logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_arg": {}}},
        r"unknown logger keys \['init_arg'\]; valid logger keys: class_path, init_args",
    ),
}


@pytest.mark.parametrize("where", MISSPELT)
def test_a_misspelt_key_at_any_level_is_refused_before_any_trial(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, every nested key but ``early_stop``'s was read with a default, so ``max_epoch: 5`` trained each child
    for one epoch; now the whole recipe is checked before Ray starts."""
    import lightning_nas.trials._cli as trials_cli

    monkeypatch.setattr(trials_cli, "run_trials", lambda *a, **k: pytest.fail("a trial ran"))
    recipe = _digits_recipe(tmp_path)
    change, message = MISSPELT[where]
    recipe.update({key: {**recipe[key], **value} if key == "trial" else value for key, value in change.items()})
    with pytest.raises(ValueError, match=message):
        run_recipe(recipe)


@pytest.mark.parametrize("key", ["num_trials", "data"])
def test_a_recipe_without_a_required_key_is_refused(key: str, tmp_path: Path) -> None:
    recipe = _digits_recipe(tmp_path)
    del recipe[key]
    with pytest.raises(ValueError, match=f"the recipe needs {key}"):
        plan_recipe(recipe)


def _cli_refusal(recipe: dict | str, path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Write ``recipe`` (a mapping, or raw text) to ``path``, run ``lightning-nas trials`` on it, and return its
    one-line error: exit status 2 and no traceback."""
    path.write_text(recipe if isinstance(recipe, str) else yaml.safe_dump(recipe))
    with pytest.raises(SystemExit) as exit_:
        main(["trials", "--config", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_the_cli_names_the_recipe_and_the_misspelt_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _digits_recipe(tmp_path)
    recipe["trial"] = {**recipe["trial"], "max_epoch": 5}
    path = tmp_path / "typo.yaml"
    err = _cli_refusal(recipe, path, capsys)
    assert f"lightning-nas trials: error: {path}: unknown trial keys ['max_epoch']" in err
    assert not (tmp_path / "run").exists()  # nothing was started or written


# A value of the wrong kind, and what the error names (before, int('three') or shape[2] failed with Python's words).
BAD_VALUES = {
    "num_trials": ({"num_trials": "three"}, "num_trials must be an integer; got 'three'"),
    "seed": ({"seed": 1.5}, "seed must be an integer; got 1.5"),
    "gpus_per_trial": ({"gpus_per_trial": "one"}, "gpus_per_trial must be a number; got 'one'"),
    "trial.max_epochs": ({"trial": {"max_epochs": "5"}}, "trial.max_epochs must be an integer; got '5'"),
    "trial.input_shape": (
        {"trial": {"input_shape": [8, 8]}},
        r"trial.input_shape must be \[channels, height, width\] \(3 positive integers\); got \[8, 8\]",
    ),
    "reward.target": ({"reward": {"target": "20k"}}, "reward.target must be a number; got '20k'"),
}


@pytest.mark.parametrize("where", BAD_VALUES)
def test_a_value_of_the_wrong_kind_is_refused_naming_its_place(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _digits_recipe(tmp_path)
    change, message = BAD_VALUES[where]
    recipe.update({key: {**recipe[key], **value} if key == "trial" else value for key, value in change.items()})
    path = tmp_path / "bad.yaml"
    err = _cli_refusal(recipe, path, capsys)
    assert re.search(f"lightning-nas trials: error: {re.escape(str(path))}: {message}", err), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scheduler": "hyperband"}, "scheduler must be one of fifo, asha, median; got 'hyperband'"),
        ({"concurrency": 0}, "concurrency must be >= 1, got 0"),
        ({}, "already holds an experiment; pass resume=True"),  # the run directory below holds one
    ],
)
def test_refusals_of_the_runner_are_one_line_errors_too(
    change: dict, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What ``run_trials`` refuses before Ray starts reaches the user as ``lightning-nas trials: error: ...``."""
    recipe = {**_digits_recipe(tmp_path), **change}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "experiment.json").write_text("{}")
    path = tmp_path / "recipe.yaml"
    err = _cli_refusal(recipe, path, capsys)
    assert f"lightning-nas trials: error: {path}: " in err
    assert message in err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["experiment.json"]


def test_a_recipe_that_is_not_yaml_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    assert f"{path} is not valid YAML" in _cli_refusal("num_trials: [3\n", path, capsys)


def test_trial_options_are_checked_where_the_trial_is_built() -> None:
    """The Python API refuses what the recipe reader does, in the driver rather than in every Ray worker."""
    from lightning_nas.data import DigitsDataModule

    with pytest.raises(ValueError, match=r"unknown trainer_options \['max_epoch'\]; valid trainer_options: "):
        LightningTrial(DigitsDataModule, trainer_options={"max_epoch": 3})
    with pytest.raises(ValueError, match=r"unknown retrain options \['arch'\]"):  # the factory gives arch itself
        RetrainFactory({"arch": "DARTS_V2"})
    assert LightningTrial(DigitsDataModule, trainer_options={"limit_train_batches": 2}).trainer_options
    assert RetrainFactory({"layers": 3, "auxiliary": False}).options == {"layers": 3, "auxiliary": False}


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
