"""Seeded sampling over any space's choices: uniform draws, one-choice mutation and uniform crossover.

Every sampling method (SPOS, random-policy ENAS, the sandwich rule's random subnets, evolution) draws from a
``torch.Generator`` built by :func:`step_generator` from ``(seed, step, k)``. Every rank builds the same
generator at the same step, so all ranks pick the same path without communicating, and a resumed run draws
exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from lightning_nas.arch import Arch, Choice, validate_arch

__all__ = ["crossover", "derive_seed", "mutate", "sample_arch", "seeded_random_ops", "step_generator"]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends on ``parts`` (e.g. ``(seed, "augment", rank, step)``) and nothing else."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def step_generator(seed: int, step: int, k: int | str = 0) -> torch.Generator:
    """A CPU generator for draw ``k`` of training step ``step`` of a run seeded with ``seed``.

    Example:
        >>> a = torch.randint(10, (3,), generator=step_generator(0, 5, 1))
        >>> b = torch.randint(10, (3,), generator=step_generator(0, 5, 1))
        >>> bool((a == b).all())
        True
    """
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, step, k))
    return generator


@contextmanager
def seeded_random_ops(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with the global torch generator (dropout, drop-path) seeded with ``seed``, then restore it.

    Layers such as ``nn.Dropout`` draw from the global generator, whose state no checkpoint holds: seeding it per
    step from ``derive_seed(seed, "dropout", rank, step, k)`` makes the masks of a run resumed mid-epoch those of
    the uninterrupted run, and leaves every other user of the global generator undisturbed.

    Example:
        >>> with seeded_random_ops(3, torch.device("cpu")):
        ...     a = torch.rand(2)
        >>> with seeded_random_ops(3, torch.device("cpu")):
        ...     b = torch.rand(2)
        >>> bool(torch.equal(a, b))
        True
    """
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def _index(n: int, generator: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=generator))


def sample_arch(choices: Sequence[Choice], generator: torch.Generator) -> Arch:
    """One architecture, every choice drawn uniformly from its candidates.

    Example:
        >>> sample_arch([Choice("op", ("conv", "pool"))], step_generator(0, 0))["op"] in ("conv", "pool")
        True
    """
    return {c.name: c.candidates[_index(len(c.candidates), generator)] for c in choices}


def mutate(
    arch: Mapping[str, Any], choices: Sequence[Choice], generator: torch.Generator, num_mutations: int = 1
) -> Arch:
    """A copy of ``arch`` with ``num_mutations`` distinct choices set to a different candidate each.

    Choices with a single candidate cannot change and are never picked. Raises ``ValueError`` if fewer than
    ``num_mutations`` choices can change.
    """
    child = validate_arch(arch, choices)
    mutable = [c for c in choices if len(c.candidates) > 1]
    if num_mutations < 0 or num_mutations > len(mutable):
        raise ValueError(f"num_mutations must be in [0, {len(mutable)}] for this space, got {num_mutations}")
    order = torch.randperm(len(mutable), generator=generator)[:num_mutations].tolist()
    for position in order:
        choice = mutable[position]
        others = [v for v in choice.candidates if v != child[choice.name]]
        child[choice.name] = others[_index(len(others), generator)]
    return child


def crossover(
    first: Mapping[str, Any], second: Mapping[str, Any], choices: Sequence[Choice], generator: torch.Generator
) -> Arch:
    """Uniform crossover: each choice's value from ``first`` or ``second`` with equal probability."""
    a, b = validate_arch(first, choices), validate_arch(second, choices)
    take_first = torch.rand(len(choices), generator=generator) < 0.5
    return {c.name: (a if take_first[i] else b)[c.name] for i, c in enumerate(choices)}
