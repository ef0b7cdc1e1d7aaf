"""The shipped recipes: the YAML configs of ``configs/``, found by name in a checkout and in an installed wheel.

A recipe's name is its path under ``configs/`` without ``.yaml`` (``darts/digits``). ``configs/`` of the
repository is the one source: a checkout (or an editable install) reads it in place, and building a wheel copies
it into the package as ``lightning_nas/configs/`` (``setup.py``), so ``pip install lightning-nas`` ships the same
files. ``lightning-nas fit --config darts/digits`` and ``lightning-nas recipes`` use this module.

Example::

    >>> from lightning_nas.recipes import recipe_path
    >>> recipe_path("darts/digits").name
    'digits.yaml'
    >>> recipe_path("configs/darts/digits.yaml") == recipe_path("darts/digits")
    True
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "RecipeNotFoundError",
    "describe_recipe",
    "list_recipes",
    "recipe_path",
    "recipes_dir",
    "recipes_main",
    "resolve_config",
    "resolve_config_args",
]

_PACKAGE = Path(__file__).resolve().parent
_SUFFIXES = (".yaml", ".yml")


class RecipeNotFoundError(ValueError):
    """A ``--config`` value that is neither an existing file nor a shipped recipe."""


def recipes_dir() -> Path:
    """The folder holding the recipes: ``lightning_nas/configs`` in a wheel, else the checkout's ``configs/``.

    Raises:
        FileNotFoundError: neither exists (a broken installation).
    """
    packaged = _PACKAGE / "configs"
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE.parent / "configs"
    if checkout.is_dir() and (_PACKAGE.parent / "setup.cfg").is_file():
        return checkout
    raise FileNotFoundError(
        f"no recipes: neither {str(packaged)!r} (an installed wheel) nor {str(checkout)!r} (a checkout) exists"
    )


def list_recipes(*, sweeps: bool = False) -> list[str]:
    """Names of the shipped fit recipes (``darts/digits``, ...), sorted; W&B sweep files with ``sweeps=True``."""
    root = recipes_dir()
    names = sorted(path.relative_to(root).with_suffix("").as_posix() for path in root.rglob("*.yaml"))
    return [name for name in names if name.startswith("sweeps/") == sweeps]


def _normalise(name: str) -> str:
    name = name.replace("\\", "/").strip("/")
    name = name.removeprefix("./").removeprefix("configs/")
    for suffix in _SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def recipe_path(name: str) -> Path:
    """The file of the recipe ``name``: ``darts/digits``, also spelled ``darts/digits.yaml`` or
    ``configs/darts/digits.yaml`` (so the repository's commands work from anywhere after ``pip install``).

    Raises:
        RecipeNotFoundError: no such recipe; the message names the closest ones and how to list them all.
    """
    key = _normalise(name)
    path = recipes_dir() / f"{key}.yaml"
    if key and ".." not in key.split("/") and path.is_file():
        return path
    known = list_recipes() + list_recipes(sweeps=True)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise RecipeNotFoundError(
        f"{name!r} is neither a file nor a shipped recipe{hint} (`lightning-nas recipes` lists all {len(known)})"
    )


def describe_recipe(name: str) -> str:
    """The first line of the recipe's header comment (what it runs), or ``""`` if it has none."""
    for line in recipe_path(name).read_text().splitlines():
        if not line.startswith("#"):
            return ""
        text = line.lstrip("#").strip()
        if text:
            return text
    return ""


def resolve_config(value: str) -> str:
    """A ``--config`` value as the command will read it: an existing file or inline YAML is kept as given; a
    recipe name becomes the recipe's path.

    Raises:
        RecipeNotFoundError: ``value`` looks like a file name (no spaces, braces or colons) but is neither an
            existing file nor a recipe.
    """
    if Path(value).is_file() or any(char in value for char in "{}:\n "):
        return value
    return str(recipe_path(value))


def resolve_config_args(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of every ``--config`` flag (``--config X``, ``--config=X``, or LightningCLI's short
    ``-c``) passed through :func:`resolve_config`."""
    out = list(argv)
    for index, arg in enumerate(out):
        if arg in ("--config", "-c") and index + 1 < len(out):
            out[index + 1] = resolve_config(out[index + 1])
        elif arg.startswith(("--config=", "-c=")):
            flag, _, value = arg.partition("=")
            out[index] = f"{flag}={resolve_config(value)}"
    return out


def recipes_main(argv: Sequence[str]) -> int:
    """``lightning-nas recipes [NAME]``: list the shipped recipes, or print one (to copy and edit)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="lightning-nas recipes",
        description="List the shipped recipes (run one with `lightning-nas fit --config NAME`), or print one.",
    )
    parser.add_argument("name", nargs="?", help="a recipe to print, e.g. darts/digits (`> my.yaml` to edit it)")
    parser.add_argument("--path", action="store_true", help="print the recipe's file path instead of its text")
    ns = parser.parse_args(list(argv))
    try:
        if ns.name is not None:
            path = recipe_path(ns.name)
            if ns.path:
                print(path)
            else:
                print(path.read_text(), end="")
            return 0
        names, sweeps = list_recipes(), list_recipes(sweeps=True)
    except (OSError, ValueError) as err:
        parser.exit(2, f"lightning-nas recipes: error: {err}\n")
    width = max(len(name) for name in names + sweeps)
    trials = [name for name in names if name.startswith("trials/")]  # read by `trials`, not by LightningCLI
    print(f"recipes in {recipes_dir()} (run one: lightning-nas fit --config NAME):")
    for name in names:
        if name not in trials:
            print(f"  {name:<{width}}  {_shorten(describe_recipe(name))}")
    print("multi-trial recipes (lightning-nas trials --config NAME):")
    for name in trials:
        print(f"  {name:<{width}}  {_shorten(describe_recipe(name))}")
    print("W&B sweeps (wandb sweep $(lightning-nas recipes --path NAME)):")
    for name in sweeps:
        print(f"  {name:<{width}}  {_shorten(describe_recipe(name))}")
    return 0


def _shorten(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."
