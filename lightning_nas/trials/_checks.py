"""Misspelt keys are refused, not ignored: a mapping a user wrote (a recipe section, a class's options) may hold only
the keys its reader knows, and the error names the unknown ones and the valid ones."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["check_keys", "keyword_parameters"]


def check_keys(given: Iterable[str], valid: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` if ``given`` holds a key outside ``valid``.

    Args:
        given: The keys written (a mapping iterates over its keys).
        valid: The keys the reader knows, in the order the message lists them.
        what: What the keys are, plural, e.g. ``"trial keys"`` or ``"retrain options"``.

    Example:
        >>> check_keys({"max_epoch": 3}, ["max_epochs", "max_steps"], "trial keys")
        Traceback (most recent call last):
        ...
        ValueError: unknown trial keys ['max_epoch']; valid trial keys: max_epochs, max_steps
    """
    valid = list(valid)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; valid {what}: {', '.join(valid)}")


def keyword_parameters(target: Callable[..., Any]) -> list[str] | None:
    """The names ``target`` (a function or class) accepts as keyword arguments, in signature order; ``None`` if it
    takes ``**kwargs`` (then any name is accepted).

    Example:
        >>> keyword_parameters(lambda a, b=1, *, c: None), keyword_parameters(lambda a, **rest: None)
        (['a', 'b', 'c'], None)
    """
    parameters = inspect.signature(target).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.kind in keyword]
