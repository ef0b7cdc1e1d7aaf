"""The documentation covers the package: every method exported by ``lightning_nas.methods`` has a page in
``docs/methods/``, the README links to each page, and the README's two commands are the ones ``.ci/run`` runs. The
names come from the package and the files, not from a list kept here. (That the files the pages name exist, and
that their commands and code still fit the package: ``test_docs_examples.py``.)"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import lightning.pytorch as pl
import pytest

import lightning_nas.methods as methods

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "methods"


def _method_classes() -> list[type]:
    """The LightningModules ``lightning_nas.methods`` exports, less the abstract base every method derives from."""
    exported = [getattr(methods, name) for name in methods.__all__]
    return [
        obj
        for obj in exported
        if inspect.isclass(obj) and issubclass(obj, pl.LightningModule) and obj is not methods.NASModule
    ]


def _pages() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in sorted(PAGES.glob("*.md")) if path.name != "index.md"}


def _page_of(cls: type) -> Path | None:
    """The page whose title names the class and whose text points at ``lightning_nas.methods.<class>``."""
    for path, text in _pages().items():
        title = text.splitlines()[0] if text else ""
        named = title.startswith("# ") and re.search(rf"\b{cls.__name__}\b", title)
        if named and f"lightning_nas.methods.{cls.__name__}" in text:
            return path
    return None


def test_the_package_exports_methods() -> None:
    assert methods.DARTS in _method_classes()  # the discovery below is not vacuous
    assert methods.NASModule not in _method_classes()


@pytest.mark.parametrize("cls", _method_classes(), ids=lambda cls: cls.__name__)
def test_every_method_has_a_page_the_readme_links_to(cls: type) -> None:
    page = _page_of(cls)
    name = cls.__name__
    assert page is not None, f"no page in {PAGES} is titled with {name} and names lightning_nas.methods.{name}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    link = f"](docs/methods/{page.name})"
    assert link in readme, f"README.md does not link to {page.relative_to(ROOT)} ({cls.__name__})"


def test_every_method_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [path.name for path in _pages() if f"methods/{path.name}" not in nav]
    assert not missing, f"docs/methods pages missing from mkdocs.yml nav: {missing}"


def test_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").replace(" -q ", " ")
    block = re.search(r"## Set up and run.*?```bash\n(.*?)```", readme, re.S)
    assert block is not None, "README.md has no command block under 'Set up and run'"
    commands = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, commands
    ci_lines = {line.strip() for line in ci.splitlines()}
    assert commands[0] in ci_lines, f".ci/run does not run README command 1: {commands[0]}"
    ci_steps = {step for line in ci_lines for step in line.split(" && ")}
    missing = [step for step in commands[1].split(" && ") if step not in ci_steps]
    assert not missing, f".ci/run does not run these steps of README command 2: {missing}"
