"""Build hook: ship the repository's ``configs/`` (the recipes) inside the package as ``lightning_nas/configs/``.

``configs/`` stays the one source users see in the repository; a checkout and an editable install read it in
place (``lightning_nas.recipes``), and a wheel gets a copy made here, so nothing is duplicated in git and no
symlink is needed. Everything else is declared in ``setup.cfg``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RECIPES = Path(__file__).resolve().parent / "configs"


class BuildPyWithRecipes(build_py):
    """``build_py`` that also copies ``configs/**/*.yaml`` to ``<build_lib>/lightning_nas/configs/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads configs/ in place
            return
        target = Path(self.build_lib) / "lightning_nas" / "configs"
        for source in sorted(RECIPES.rglob("*.yaml")):
            destination = target / source.relative_to(RECIPES)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)


setup(cmdclass={"build_py": BuildPyWithRecipes})
