"""What README.md and docs/ tell users to type still works with the package as it is.

- Every file of the repository the pages name (``configs/...yaml``, ``benchmarks/...py``, ``examples/...py``)
  exists.
- Every ``lightning-nas`` and ``python benchmarks/...`` command in a shell block parses with the parser that would
  run it (``tests/docs_commands_run.py``: LightningCLI's ``--print_config`` for ``fit``/``test``, the subcommand's or
  script's own ``argparse`` parser otherwise). Nothing is trained.
- Every Python block imports names the package has, calls the package's classes and functions with arguments their
  signatures accept, calls methods the objects have, and overrides hooks the base class has, with its parameters.
- Every call written inline in the prose (``scale_network(phi, alpha, ..., depth=cells)``) names arguments its
  signature has (the prose may leave arguments out).
- In both, a positional argument spelled like one of the parameters lands on that parameter.
- Every YAML block is read as what it documents: a part of a ``lightning-nas fit`` config is merged onto a shipped
  recipe and parsed with ``--print_config``; a part of a ``lightning-nas trials`` recipe (on ``docs/trials.md``)
  passes the recipe reader's key check, ``check_recipe_keys`` (``...`` stands for what is left out).

The truth is the package itself (its parsers and signatures), not a list kept here, and each check is shown to
refuse a broken example.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import os
import pkgutil
import re
import shlex
import subprocess
import sys
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

import lightning_nas

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "docs_commands_run.py"
COMMAND_STARTS = ("lightning-nas ", "python benchmarks/")
SHELL = ("bash", "sh", "shell", "console", "text", "")


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _blocks(path: Path) -> Iterator[tuple[str, int, list[str]]]:
    """``(language, line of the first body line, body lines)`` of each fenced block of a page."""
    language: str | None = None
    start = 0
    body: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            if language is None:
                language, start, body = line.strip()[3:].strip(), number + 1, []
            else:
                yield language, start, body
                language = None
        elif language is not None:
            body.append(line)


def _fenced(language: str) -> list[tuple[str, str]]:
    """``(page:line, text)`` of each fenced block in ``language`` on the pages."""
    return [
        (f"{page.relative_to(ROOT)}:{start}", "\n".join(body))
        for page in _pages()
        for block_language, start, body in _blocks(page)
        if block_language == language
    ]


@dataclasses.dataclass(frozen=True)
class _Command:
    where: str  # page:line
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _commands() -> list[_Command]:
    """The commands of the shell blocks, continuation lines joined, comments dropped, ``[--opt value]`` as given."""
    found = []
    for page in _pages():
        for language, start, body in _blocks(page):
            if language not in SHELL:
                continue
            index = 0
            while index < len(body):
                number, line = start + index, body[index]
                while line.rstrip().endswith("\\") and index + 1 < len(body):
                    index += 1
                    line = line.rstrip()[:-1] + " " + body[index].strip()
                index += 1
                line = re.split(r"\s#", line.strip())[0]
                if line.startswith(COMMAND_STARTS):
                    line = re.sub(r"\[(--[^\]]*)\]", r"\1", line)  # an optional flag shown in brackets
                    found.append(_Command(f"{page.relative_to(ROOT)}:{number}", tuple(shlex.split(line))))
    return found


def _users_own_config(command: _Command) -> bool:
    """``--config my.yaml``: a file of the user's, not a shipped recipe (a path outside ``configs/``)."""
    words = command.words
    configs = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--config"]
    return any(c.endswith((".yaml", ".yml")) and not c.startswith("configs/") for c in configs)


def _absolute(words: tuple[str, ...]) -> list[str]:
    """Recipe paths made absolute, so the check does not depend on the working directory (the runner finds
    ``benchmarks/`` scripts in the repository itself)."""
    return [str(ROOT / word) if word.startswith("configs/") else word for word in words]


def _parse(commands: list[list[str]], data_root: Path) -> list[str | None]:
    """``tests/docs_commands_run.py`` on the commands, in one process: ``None`` or the parser's message each."""
    env = {**os.environ, "LIGHTNING_NAS_DATA": str(data_root)}
    result = subprocess.run(
        [sys.executable, str(RUNNER)],
        input=json.dumps(commands),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers: list[str | None] = json.loads(result.stdout)
    return answers


# Broken on purpose, one per way a command is parsed: the check must refuse each, naming the bad word.
BROKEN = [
    (["lightning-nas", "fit", "--config", "configs/darts/digits.yaml", "--model.ordr=first"], "ordr"),
    (["lightning-nas", "trials", "--config", "configs/trials/nasrl_digits.yaml", "--resumee"], "--resumee"),
    (["lightning-nas", "export", "--ckpt_path", "last.ckpt", "--outptu", "cell.json"], "--outptu"),
    (
        ["lightning-nas", "search", "--config", "configs/spos/fashion_mnist.yaml", "--ckpt_path", "x"]
        + ["--max_parms", "1"],
        "--max_parms",  # handed on to the training config's parser, which refuses it
    ),
    (["python", "benchmarks/nb201_search.py", "--seedz", "3"], "--seedz"),
]


def test_the_pages_name_files_the_repository_has() -> None:
    pattern = re.compile(r"\b((?:configs|benchmarks|examples)/[\w/.-]+\.(?:yaml|py))\b")
    named = {(page, path) for page in _pages() for path in pattern.findall(page.read_text(encoding="utf-8"))}
    assert len({path for _, path in named}) > 20, named  # the pattern finds what the pages name
    missing = sorted(f"{page.relative_to(ROOT)}: {path}" for page, path in named if not (ROOT / path).is_file())
    assert not missing, "pages name files that do not exist:\n" + "\n".join(missing)


def test_documented_commands_parse(data_root: Path, tmp_path: Path) -> None:
    """Every documented command, and every YAML block of a fit config on top of a shipped recipe, parses; the same
    check refuses each of ``BROKEN`` (one process for all)."""
    commands = [command for command in _commands() if not _users_own_config(command)]
    assert "lightning-nas fit --config configs/darts/digits.yaml" in {c.text for c in commands}  # README's demo
    assert {c.words[1] for c in commands} >= {"fit", "test", "export", "search", "lut", "proxies", "trials"}
    assert any(c.words[0] == "python" for c in commands)
    blocks = [(where, block) for where, block in _fenced("yaml") if not where.startswith(TRIALS_PAGE)]
    assert blocks
    bad_block = "data:\n  class_path: lightning_nas.data.ImageFolderDataModule\n  init_args: {pathh: x.tar.gz}\n"
    for index, (where, block) in enumerate([*blocks, ("a broken block", bad_block)]):
        path = tmp_path / f"block{index}.yaml"  # a part of a fit config, on top of a shipped recipe
        path.write_text(block, encoding="utf-8")
        fit = ("lightning-nas", "fit", "--config", "configs/darts/digits.yaml", "--config", str(path))
        commands.append(_Command(where, fit))
    broken_block = commands.pop()
    rejects = [*BROKEN, (list(broken_block.words), "pathh")]
    broken = [_absolute(tuple(words)) for words, _ in rejects]
    answers = _parse(broken + [_absolute(c.words) for c in commands], data_root)
    for (words, bad), answer in zip(rejects, answers):
        assert answer is not None, f"the check let a broken command through: {' '.join(words)}"
        assert bad in answer, answer
    failed = [
        f"{c.where}: {c.text}\n    " + "\n    ".join(a.splitlines()[-4:])
        for c, a in zip(commands, answers[len(rejects) :])
        if a is not None
    ]
    assert not failed, "documented commands that do not parse:\n" + "\n".join(failed)


# ---- Python blocks ------------------------------------------------------------------------------------------------


@cache
def _package_names() -> dict[str, Any]:
    """Every name a public subpackage of ``lightning_nas`` exports (blocks may use them without their import)."""
    names: dict[str, Any] = {}
    for module in pkgutil.iter_modules(lightning_nas.__path__):
        if not module.name.startswith("_"):
            package = importlib.import_module(f"lightning_nas.{module.name}")
            names.update({name: getattr(package, name) for name in getattr(package, "__all__", ())})
    return names


def _ours(obj: Any) -> bool:
    return getattr(obj, "__module__", "").split(".")[0] == "lightning_nas"


def _return_class(function: Any) -> type | None:
    try:
        hint = typing.get_type_hints(function).get("return")
    except Exception:  # an annotation that does not resolve here says nothing about the example
        return None
    return hint if inspect.isclass(hint) else None


class _Checker(ast.NodeVisitor):
    """Walks a block in source order and collects what does not fit the package.

    It knows the objects a block imports from the package or uses from its exports, the classes the block derives
    from the package's, and the class of a variable assigned from a call (a constructor, or a function whose return
    annotation is a class). Calls to the package are bound to their signatures; a method called on an object of a
    known class must exist, and so must an attribute read from a dataclass. Whatever else a block uses (its own
    placeholders, torch, Lightning) is taken as it is.
    """

    def __init__(self, partial: bool = False) -> None:
        self.partial = partial  # prose abbreviates calls: arguments may be left out, none may be unknown
        self.bound = 0  # calls to the package bound to their signatures
        self.names: dict[str, Any] = {}  # imported objects; a class derived from ours stands for its base
        self.variables: dict[str, type | None] = {}  # assigned names, with their class where known
        self.bases: list[type] = []  # the package class of each class being defined, for super()
        self.calls: set[int] = set()  # the ids of the nodes that are called
        self.problems: list[str] = []

    def report(self, node: ast.AST, message: str) -> None:
        self.problems.append(f"line {getattr(node, 'lineno', '?')}: {message}")

    def resolve(self, node: ast.expr) -> tuple[Any, bool]:
        """The object an expression names, and whether calling it needs a ``self`` (a method looked up on a class)."""
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id], False
            return (None if node.id in self.variables else _package_names().get(node.id)), False
        if not isinstance(node, ast.Attribute):
            return None, False
        if isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "super" and self.bases:
            return self.member(self.bases[-1], node), True
        owner, _ = self.resolve(node.value)
        if inspect.ismodule(owner) or inspect.isclass(owner):
            if _ours(owner) and not hasattr(owner, node.attr):
                self.report(node, f"{owner.__name__} has no attribute {node.attr!r}")
            # Prose names a method by its class (``Genotype.graph(cell)``): it is called on an instance.
            method = inspect.isclass(owner) and inspect.isfunction(inspect.getattr_static(owner, node.attr, None))
            return getattr(owner, node.attr, None), self.partial and method
        cls = self.infer(node.value)
        return (None, False) if cls is None else (self.member(cls, node), True)

    def member(self, cls: type, node: ast.Attribute) -> Any:
        """``cls``'s attribute ``node.attr``; reported if missing where it must exist (called, or of a dataclass)."""
        if hasattr(cls, node.attr):
            return getattr(cls, node.attr)
        fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        if id(node) in self.calls or (dataclasses.is_dataclass(cls) and node.attr not in fields):
            self.report(node, f"{cls.__name__} has no attribute {node.attr!r}")
        return None

    def infer(self, node: ast.expr) -> type | None:
        """The class of an expression's value, where the block says it."""
        if isinstance(node, ast.Name):
            return self.variables.get(node.id)
        if isinstance(node, ast.Call):
            callee, _ = self.resolve(node.func)
            if inspect.isclass(callee):
                return callee
            return _return_class(callee) if callable(callee) else None
        return None

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if not (node.module or "").startswith("lightning_nas"):
            return
        try:
            module = importlib.import_module(node.module or "")
        except ImportError as err:
            self.report(node, f"from {node.module} import ...: {err}")
            return
        for alias in node.names:
            if not hasattr(module, alias.name):
                self.report(node, f"{node.module} has no {alias.name!r}")
            else:
                self.names[alias.asname or alias.name] = getattr(module, alias.name)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases]:
            self.visit(expr)
        ours = [base for base in (self.resolve(b)[0] for b in node.bases) if inspect.isclass(base) and _ours(base)]
        if ours:
            self.names[node.name] = ours[0]
        self.bases.append(ours[0] if ours else object)
        for item in node.body:
            if ours and isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                self.check_override(ours[0], item)
            self.visit(item)
        self.bases.pop()

    def check_override(self, base: type, function: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        """A method of a class derived from ours overrides one the base has, with the base's parameters."""
        if function.name.startswith("__"):
            return
        hook = getattr(base, function.name, None)
        if not callable(hook):
            self.report(function, f"overrides {base.__name__}.{function.name}, which does not exist")
            return
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        theirs = [p.name for p in inspect.signature(hook).parameters.values() if p.kind in positional]
        ours = [a.arg for a in function.args.posonlyargs + function.args.args]
        if ours != theirs:
            self.report(function, f"{function.name}({', '.join(ours)}) against {base.__name__}'s ({', '.join(theirs)})")

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        cls = self.infer(node.value)
        for target in node.targets:
            self.visit(target)
            if isinstance(target, ast.Name):
                self.variables[target.id] = cls
                self.names.pop(target.id, None)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)
        if id(node) in self.calls:
            return  # visit_Call resolves it
        cls = self.infer(node.value)
        if cls is not None and dataclasses.is_dataclass(cls):
            self.member(cls, node)

    def visit_Call(self, node: ast.Call) -> None:
        self.calls.add(id(node.func))
        self.generic_visit(node)
        callee, needs_self = self.resolve(node.func)
        if callee is None or not callable(callee) or not _ours(inspect.unwrap(callee)):
            return
        keywords = {k.arg: object() for k in node.keywords if k.arg is not None}
        if any(isinstance(a, ast.Starred) for a in node.args) or len(keywords) < len(node.keywords):
            return  # *args / **kwargs: nothing to bind
        try:
            signature = inspect.signature(callee)
        except (TypeError, ValueError):  # a builtin without one
            return
        bind = signature.bind_partial if self.partial else signature.bind
        positional = [object() for _ in range(len(node.args) + needs_self)]
        try:
            bound = bind(*positional, **keywords)
        except TypeError as err:
            self.report(node, f"{ast.unparse(node)[:100]}: {err} (signature {signature})")
            return
        self.bound += 1
        # A positional argument spelled as one of the parameters lands on that parameter, not on another one.
        lands = {id(value): name for name, value in bound.arguments.items()}
        for arg, value in zip(node.args, positional[needs_self:]):
            name = lands.get(id(value))
            if isinstance(arg, ast.Name) and arg.id in signature.parameters and name not in (None, arg.id):
                self.report(node, f"{ast.unparse(node)[:100]}: `{arg.id}` lands on parameter {name!r} {signature}")


def _check_python(source: str) -> list[str]:
    checker = _Checker()
    checker.visit(ast.parse(source))
    return checker.problems


def test_the_pages_have_python_blocks() -> None:
    assert len(_fenced("python")) >= 5


@pytest.mark.parametrize(("where", "source"), _fenced("python"), ids=[where for where, _ in _fenced("python")])
def test_python_blocks_fit_the_package(where: str, source: str) -> None:
    problems = _check_python(source)
    assert not problems, f"{where}:\n" + "\n".join(problems)


BROKEN_PYTHON = {
    "an import the package does not have": ("from lightning_nas.methods import DART", "has no 'DART'"),
    "a keyword the signature does not have": (
        "from lightning_nas.methods import DARTS\nfrom lightning_nas.spaces import DartsCellSpace\n"
        "model = DARTS(DartsCellSpace(in_channels=3, num_classes=10), ordr='second')",
        "unexpected keyword argument 'ordr'",
    ),
    "an exported name used without its import, called wrongly": (
        "run_budgeted_search(strategy, table, budget=1, cost_column='c', report_metric='m', cost_scal=1)",
        "unexpected keyword argument 'cost_scal'",
    ),
    "a method the object does not have": (
        "from lightning_nas.search import TabularBenchmark\nfrom lightning_nas.spaces import NasBench201Format\n"
        "table = TabularBenchmark.load('t.csv', NasBench201Format())\ntable.qeury('|skip_connect~0|')",
        "TabularBenchmark has no attribute 'qeury'",
    ),
    "a hook the base class does not have": (
        "from lightning_nas.methods import DARTS\nclass Mine(DARTS):\n    def architecture_los(self, logits, y):\n"
        "        return 0",
        "overrides DARTS.architecture_los, which does not exist",
    ),
    "a hook with other parameters": (
        "from lightning_nas.methods import DARTS\nclass Mine(DARTS):\n    def architecture_loss(self, logits):\n"
        "        return super().architecture_loss(logits)",
        "architecture_loss(self, logits) against DARTS's",
    ),
    "a super() call with a missing argument": (
        "from lightning_nas.methods import DARTS\nclass Mine(DARTS):\n"
        "    def architecture_loss(self, logits, targets):\n        return super().architecture_loss(logits)",
        "missing a required argument",
    ),
}


@pytest.mark.parametrize("case", BROKEN_PYTHON)
def test_a_broken_python_block_is_refused(case: str) -> None:
    source, expected = BROKEN_PYTHON[case]
    problems = _check_python(source)
    assert any(expected in problem for problem in problems), problems


# ---- Calls in the prose --------------------------------------------------------------------------------------------


def _prose_calls() -> list[tuple[str, str]]:
    """``(page:line, code)`` of each inline code span outside the fenced blocks that is a Python expression with a
    call in it (``scale_network(phi, alpha, beta, gamma, depth=cells, ...)``)."""
    found = []
    for page in _pages():
        fenced = False
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            for span in [] if fenced else re.findall(r"`([^`]+)`", line):
                try:
                    tree = ast.parse(span, mode="eval")
                except SyntaxError:
                    continue
                if any(isinstance(node, ast.Call) for node in ast.walk(tree)):
                    found.append((f"{page.relative_to(ROOT)}:{number}", span))
    return found


def _check_prose(span: str) -> tuple[list[str], int]:
    """What in an inline call does not fit the package, and how many of its calls were the package's."""
    checker = _Checker(partial=True)
    checker.visit(ast.parse(span, mode="eval"))
    return checker.problems, checker.bound


def test_calls_in_the_prose_fit_the_package() -> None:
    """The pages' prose shortens calls (``write_family(path, phis, ...)``): left-out arguments are fine there, an
    argument the signature does not have is not."""
    checked = {where_span: _check_prose(where_span[1]) for where_span in _prose_calls()}
    assert sum(bound > 0 for _, bound in checked.values()) >= 20  # the prose does call the package
    problems = [f"{where}: `{span}`: {p}" for (where, span), (found, _) in checked.items() for p in found]
    assert not problems, "calls in the prose that do not fit the package:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        ("RecalibrateBatchNorm(num_image=1000)", "unexpected keyword argument 'num_image'"),
        ("coefficient_grid(step, low, high, target, tolerance, extra)", "too many positional arguments"),
        ("coefficient_grid(step, low, high, tolerance)", "`tolerance` lands on parameter 'target'"),
        ("Genotype.graph(cell, steps)", "too many positional arguments"),
        ("TabularBenchmark.loads('t.csv', NasBench201Format())", "TabularBenchmark has no attribute 'loads'"),
    ],
)
def test_a_broken_call_in_the_prose_is_refused(span: str, expected: str) -> None:
    problems, _ = _check_prose(span)
    assert any(expected in problem for problem in problems), problems


# ---- YAML blocks --------------------------------------------------------------------------------------------------

TRIALS_PAGE = "docs/trials.md"


def _without_placeholders(value: Any) -> Any:
    """A recipe block with its ``...`` placeholders (``init_args: {...}``) left out."""
    if isinstance(value, dict):
        return {key: _without_placeholders(item) for key, item in value.items() if key != "..."}
    if isinstance(value, list):
        return [_without_placeholders(item) for item in value]
    return value


def _recipe_problem(block: str) -> str | None:
    """What :func:`check_recipe_keys` says of a recipe block, or ``None``."""
    from lightning_nas.trials._cli import check_recipe_keys

    try:
        check_recipe_keys(_without_placeholders(yaml.safe_load(block)))
    except ValueError as err:
        return str(err)
    return None


def test_recipe_blocks_use_keys_the_reader_knows() -> None:
    blocks = [(where, block) for where, block in _fenced("yaml") if where.startswith(TRIALS_PAGE)]
    assert len(blocks) >= 2
    problems = [f"{where}: {problem}" for where, block in blocks if (problem := _recipe_problem(block))]
    assert not problems, "recipe blocks with keys the reader does not know:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("trial: {max_epoch: 10}", "unknown trial keys ['max_epoch']"),
        ("trial: {early_stop: {min_epoch: 3}}", "unknown trial.early_stop keys ['min_epoch']"),
        ("trial: {trainer: {limit_train_batchs: 2}}", "unknown trial.trainer keys ['limit_train_batchs']"),
        ("trial: {retrain: {lrr: 0.1}}", "unknown trial.retrain keys ['lrr']"),
        ("strategy: {name: nasrl, options: {batch_sise: 4}}", "unknown strategy.options keys ['batch_sise']"),
        ("data: {class_path: lightning_nas.data.DigitsDataModule, init_args: {...: null, subsett: 3}}", "subsett"),
        ("reward: {target: 1, costs: flops}", "unknown reward keys ['costs']"),
        ("space: {class_path: lightning_nas.spaces.DartsCellSpace, init_args: {chanels: 4}}", "['chanels']"),
        ("logger: [{class_path: lightning.pytorch.loggers.CSVLogger, init_arg: {}}]", "unknown logger keys"),
        ("epochs: 3", "unknown recipe keys ['epochs']"),
    ],
)
def test_a_recipe_block_with_an_unknown_key_is_refused(block: str, expected: str) -> None:
    problem = _recipe_problem(block)
    assert problem is not None, block
    assert expected in problem, problem
