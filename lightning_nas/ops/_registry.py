"""A registry of candidate operations: op name -> factory ``(channels, stride, affine) -> nn.Module``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Protocol

from torch import nn

__all__ = ["OpFactory", "build_op", "list_ops", "register_op"]


class OpFactory(Protocol):
    """Builds a candidate op that maps ``[B, channels, H, W]`` to ``[B, channels, H // stride, W // stride]``."""

    def __call__(self, channels: int, stride: int, affine: bool) -> nn.Module: ...


_OPS: dict[str, OpFactory] = {}


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Register a candidate op under ``name``; a decorator.

    Raises:
        ValueError: ``name`` is already registered.

    Example:
        >>> from torch import nn
        >>> @register_op("doc_identity")
        ... def _identity(channels: int, stride: int, affine: bool) -> nn.Module:
        ...     return nn.Identity()
        >>> "doc_identity" in list_ops()
        True
    """

    def decorator(factory: OpFactory) -> OpFactory:
        if name in _OPS:
            raise ValueError(f"an op is already registered under the name {name!r}")
        _OPS[name] = factory
        return factory

    return decorator


def build_op(name: str, channels: int, stride: int, affine: bool = True) -> nn.Module:
    """Instantiate the op registered as ``name``.

    Raises:
        ValueError: unknown ``name`` (the message lists the registered ones) or a stride other than 1 or 2.
    """
    if name not in _OPS:
        raise ValueError(f"unknown op {name!r}; registered ops: {', '.join(sorted(_OPS))}")
    if stride not in (1, 2):
        raise ValueError(f"op {name!r}: stride must be 1 or 2, got {stride}")
    return _OPS[name](channels, stride, affine)


def list_ops(pattern: str = "*") -> list[str]:
    """Registered op names matching the fnmatch ``pattern``, sorted."""
    return sorted(name for name in _OPS if fnmatch.fnmatch(name, pattern))
