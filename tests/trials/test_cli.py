"""``lightning-nas trials``: the shipped recipes build their space and strategy; bad recipes are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_nas.cli import main
from lightning_nas.search import PolicySearch
from lightning_nas.trials._cli import _instantiate, build_strategy, run_recipe

RECIPES = Path(__file__).resolve().parents[2] / "configs" / "trials"


@pytest.mark.parametrize("name", ["nasrl_digits.yaml", "nasrl_darts_cifar10.yaml"])
def test_shipped_recipes_build_a_controller_over_their_space(name: str) -> None:
    recipe = yaml.safe_load((RECIPES / name).read_text())
    space = _instantiate(recipe["space"], "space")
    strategy = build_strategy(recipe["strategy"], space, 0, "accuracy")
    assert isinstance(strategy, PolicySearch)
    assert [c.name for c in strategy.choices] == [c.name for c in space.choices()]
    assert space.validate_arch(strategy.ask())


def test_unknown_strategy_and_keys_are_refused() -> None:
    recipe = yaml.safe_load((RECIPES / "nasrl_digits.yaml").read_text())
    with pytest.raises(ValueError, match="strategy.name must be one of random, evolution, nsga2, reinforce, nasrl"):
        run_recipe({**recipe, "strategy": {"name": "bayes"}})
    with pytest.raises(ValueError, match=r"unknown recipe keys \['epochs'\]"):
        run_recipe({**recipe, "epochs": 3})


def test_cli_refuses_a_missing_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trials", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml' is neither a file nor a shipped recipe" in capsys.readouterr().err
