"""Nested elastic spaces (Once-for-All, BigNAS): every subnet is a slice of one supernet's weights.

A choice of an elastic space is an integer size along one *dimension*, the last segment of the choice name
(``"stage0/block1/kernel"`` is along ``"kernel"``, ``"resolution"`` along ``"resolution"``); a larger value
keeps more of the shared weights. Methods that train such spaces restrict the dimensions phase by phase
(:meth:`ElasticSpace.restrict`) and sample inside the restriction with a seeded generator.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from lightning_nas._safe_io import resolve_named_class
from lightning_nas.arch import Arch, Choice
from lightning_nas.sampling import sample_arch
from lightning_nas.spaces.base import SearchSpace

__all__ = ["ElasticSpace", "Limits", "dimension_of", "elastic_space_from_config", "resize_images"]

Limits = Mapping[str, Sequence[int]]
"""Allowed values per dimension, e.g. ``{"kernel": (7,), "depth": (3, 4)}``; dimensions left out are free."""


def dimension_of(choice_name: str) -> str:
    """The dimension a choice is along: the last ``/``-separated segment of its name.

    Example:
        >>> dimension_of("stage2/block0/expand"), dimension_of("resolution")
        ('expand', 'resolution')
    """
    return choice_name.rsplit("/", 1)[-1]


def resize_images(x: Tensor, resolution: int | None) -> Tensor:
    """``x`` resized (bilinear, no corner alignment) to ``resolution`` square; unchanged if it already is or ``None``.

    Example:
        >>> resize_images(torch.zeros(2, 1, 28, 28), 24).shape
        torch.Size([2, 1, 24, 24])
    """
    if resolution is None or x.shape[-2:] == (resolution, resolution):
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)


class ElasticSpace(SearchSpace):
    """A supernet of nested subnets with integer choices; subclasses build it and say how a subnet is exported.

    Subclasses implement :meth:`choices`, :meth:`activate`, ``forward``, :meth:`export_subnet`,
    :meth:`count_params`, :meth:`count_flops`, :meth:`reorganize_channels` and :meth:`config`. Sampling and
    phase restrictions are shared here.
    """

    @abstractmethod
    def export_subnet(self, arch: Mapping[str, Any], *, fixed_resolution: bool = True) -> nn.Module:
        """A standalone static ``nn.Module`` computing subnet ``arch`` with copies of its weights and BN statistics.

        ``fixed_resolution=False`` leaves inputs at their own size instead of resizing them to the subnet's.
        """

    @abstractmethod
    def active_arch(self) -> Arch:
        """The subnet running now."""

    @abstractmethod
    def count_params(self, arch: Mapping[str, Any]) -> int:
        """Parameters of the exported subnet ``arch``, computed without building it."""

    @abstractmethod
    def count_flops(self, arch: Mapping[str, Any]) -> int:
        """Multiply-accumulates of one image through subnet ``arch``, computed without building it."""

    def arch_cost(self, arch: Mapping[str, Any], image_size: int) -> dict[str, float]:
        """Params and FLOPs of subnet ``arch`` for the search's cost model (:class:`~lightning_nas.search.CostModel`).

        Elastic layers hold the largest weights and run slices of them, so counting the parameters of the modules
        that ran would count the largest subnet's; the subnet's own counts are used instead. ``image_size`` is not
        used: the subnet resizes every input to its own resolution.
        """
        return {"params": float(self.count_params(arch)), "flops": float(self.count_flops(arch))}

    @abstractmethod
    def reorganize_channels(self, keep_within: Sequence[int] = ()) -> None:
        """Sort elastic channels by importance so that narrower subnets keep the most important ones."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments as JSON values: ``type(space)(**space.config())`` rebuilds it."""

    def dimensions(self) -> dict[str, tuple[int, ...]]:
        """Every dimension with the sorted values its choices offer.

        Example:
            >>> from lightning_nas.spaces import ElasticMobileNetV3
            >>> ElasticMobileNetV3(preset="cifar").dimensions()
            {'resolution': (24, 28, 32), 'depth': (2, 3, 4), 'kernel': (3, 5, 7), 'expand': (3, 4, 6)}
        """
        found: dict[str, set[int]] = {}
        for choice in self.choices():
            found.setdefault(dimension_of(choice.name), set()).update(int(c) for c in choice.candidates)
        return {dimension: tuple(sorted(values)) for dimension, values in found.items()}

    def restrict(self, limits: Limits | None = None) -> list[Choice]:
        """The choices with candidates cut to ``limits``.

        Raises:
            ValueError: an unknown dimension, or a value a dimension does not offer, naming the valid ones.
        """
        offered = self.dimensions()
        limits = {} if limits is None else limits
        for dimension, values in limits.items():
            if dimension not in offered:
                raise ValueError(f"unknown dimension {dimension!r}; this space has: {', '.join(offered)}")
            outside = sorted(set(values) - set(offered[dimension]))
            if outside or not values:
                valid = ", ".join(map(str, offered[dimension]))
                raise ValueError(f"dimension {dimension!r} got {list(values)}; valid values: {valid}")
        restricted = []
        for choice in self.choices():
            allowed = limits.get(dimension_of(choice.name))
            candidates = choice.candidates if allowed is None else tuple(c for c in choice.candidates if c in allowed)
            if not candidates:
                valid = ", ".join(map(str, choice.candidates))
                raise ValueError(f"limits leave choice {choice.name!r} no value; it offers: {valid}")
            restricted.append(Choice(choice.name, candidates))
        return restricted

    def sample_max_subnet(self, limits: Limits | None = None) -> Arch:
        """The largest subnet (every choice at its largest allowed value)."""
        return {choice.name: max(int(c) for c in choice.candidates) for choice in self.restrict(limits)}

    def sample_min_subnet(self, limits: Limits | None = None) -> Arch:
        """The smallest subnet (every choice at its smallest allowed value)."""
        return {choice.name: min(int(c) for c in choice.candidates) for choice in self.restrict(limits)}

    def sample_subnet(self, generator: torch.Generator, limits: Limits | None = None) -> Arch:
        """A subnet with every choice drawn uniformly from its allowed values."""
        return sample_arch(self.restrict(limits), generator)

    def space_path(self) -> str:
        """``module.QualName`` of the space's class, which :func:`elastic_space_from_config` imports."""
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def checkpoint_entry(self, limits: Mapping[str, Sequence[int]] | None = None) -> dict[str, Any]:
        """What a method stores in its checkpoint entry so that the supernet can be rebuilt without the training
        config (``lightning-nas export --subnet``): the space's class and constructor arguments, and the sizes the
        run trained (``limits``: dimension -> values; default: all of them)."""
        limits = self.dimensions() if limits is None else limits
        return {
            "limits": {d: list(v) for d, v in limits.items()},
            "space_class": self.space_path(),
            "space_config": self.config(),
        }


def elastic_space_from_config(
    class_path: str, config: Mapping[str, Any], source: str | os.PathLike[str] = "<config>"
) -> ElasticSpace:
    """Rebuild a space from :meth:`ElasticSpace.space_path` and :meth:`ElasticSpace.config` (e.g. from a checkpoint).

    The class is resolved with :func:`~lightning_nas._safe_io.resolve_named_class`: a checkpoint may name spaces
    of lightning_nas or of modules already imported, and cannot make this import anything else.

    Args:
        class_path: ``module.Class`` of the space.
        config: its constructor arguments.
        source: the file both came from, for messages.

    Raises:
        UnsafeFileError: the class's module is outside lightning_nas and not imported.
        ValueError: the class cannot be imported or is not an :class:`ElasticSpace`.

    Example:
        >>> from lightning_nas.spaces import ElasticMobileNetV3
        >>> space = ElasticMobileNetV3(preset="cifar", num_classes=4)
        >>> elastic_space_from_config(space.space_path(), space.config()).num_classes
        4
    """
    cls = resolve_named_class(class_path, source)
    if not issubclass(cls, ElasticSpace):
        raise ValueError(f"{class_path!r} is not an ElasticSpace")
    return cls(**config)
