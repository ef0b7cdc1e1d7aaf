"""Parse commands the way ``lightning-nas`` and the benchmark scripts would, without running them.

Used by ``test_docs_examples.py``::

    python tests/docs_commands_run.py < commands.json

reads a JSON list of commands, each a list of words (``["lightning-nas", "fit", "--config", ...]`` or
``["python", "benchmarks/x.py", ...]``), and prints a JSON list of the same length: ``null`` where the command
parses, else the parser's message. Nothing is trained, read or written:

- ``fit``, ``validate``, ``test`` and ``predict`` stop at LightningCLI's ``--print_config``, which checks every flag
  and class path against the classes' signatures;
- the other subcommands and the benchmark scripts stop as soon as their ``argparse`` parser has parsed. Flags a
  subcommand hands on to the training config's parser (``search``, ``lut`` and ``proxies`` do) are checked by
  ``--print_config`` on that config.

One process for all commands, so that the imports of torch and Lightning are paid once, and so that what the scripts
set at import (``sys.path``, warning filters, logging) stays out of the test process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import runpy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lightning_nas.cli import main  # noqa: E402

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


class _Parsed(Exception):
    """Raised in place of running a command once its argparse parser has parsed: what it parsed and left over."""

    def __init__(self, namespace: argparse.Namespace, rest: list[str]) -> None:
        super().__init__()
        self.namespace, self.rest = namespace, rest


@contextlib.contextmanager
def _stop_after_parsing() -> Iterator[None]:
    """Every ``argparse`` parser raises :class:`_Parsed` after parsing; ``parse_args`` still refuses leftovers."""
    parse_known_args, parse_args = argparse.ArgumentParser.parse_known_args, argparse.ArgumentParser.parse_args

    def known(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> NoReturn:
        parsed, rest = parse_known_args(self, args, namespace)
        raise _Parsed(parsed, rest)

    def strict(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> NoReturn:
        parsed, rest = parse_known_args(self, args, namespace)
        if rest:
            self.error(f"unrecognized arguments: {' '.join(rest)}")
        raise _Parsed(parsed, rest)

    argparse.ArgumentParser.parse_known_args = known  # type: ignore[method-assign]
    argparse.ArgumentParser.parse_args = strict  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args = parse_known_args  # type: ignore[method-assign]
        argparse.ArgumentParser.parse_args = parse_args  # type: ignore[method-assign]


def _print_config(args: list[str]) -> str | None:
    """``lightning-nas ARGS --print_config``: ``None`` if it exits 0, else what it printed on standard error."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            main([*args, "--print_config"])
    except SystemExit as exit_:
        if exit_.code in (0, None):
            return None
        return err.getvalue().strip() or f"exit code {exit_.code}"
    return err.getvalue().strip() or "--print_config did not exit"


def check(words: list[str]) -> str | None:
    """``None`` if the command parses, else the parser's message."""
    if words[:1] == ["lightning-nas"] and words[1:2] and words[1] in LIGHTNING_SUBCOMMANDS:
        return _print_config(words[1:])
    if words[:1] == ["lightning-nas"]:
        run: Any = lambda: main(words[1:])  # noqa: E731
    elif words[:1] == ["python"] and len(words) > 1 and words[1].startswith("benchmarks/"):
        script = REPO / words[1]
        if not script.is_file():
            return f"{words[1]} does not exist"
        sys.argv = [str(script), *words[2:]]
        run = lambda: runpy.run_path(str(script), run_name="__main__")  # noqa: E731
    else:
        return f"not a lightning-nas or benchmarks/ command: {' '.join(words)}"
    err = io.StringIO()
    try:
        with _stop_after_parsing(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            run()
    except _Parsed as parsed:
        config = getattr(parsed.namespace, "config", None)
        if parsed.rest and config:  # handed on to the training config's parser
            return _print_config(["fit", "--config", config, *parsed.rest])
        return None
    except SystemExit as exit_:
        return err.getvalue().strip() or f"exit code {exit_.code}"
    return err.getvalue().strip() or "the command returned before parsing its arguments"


if __name__ == "__main__":
    commands = json.load(sys.stdin)
    json.dump([check(words) for words in commands], sys.stdout)
