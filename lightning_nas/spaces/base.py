"""What every search space offers: named choices, a discrete view, and (if differentiable) architecture parameters."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any

from torch import Tensor, nn

from lightning_nas.arch import Arch, Choice, validate_arch

__all__ = ["DifferentiableSpace", "SearchSpace", "check_images", "reduction_layers"]


def check_images(x: Tensor, in_channels: int) -> None:
    """Raise ``ValueError`` unless ``x`` is a batch of images ``[B, in_channels, H, W]``."""
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"expected images [B, {in_channels}, H, W], got shape {tuple(x.shape)}")


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the two reduction cells in a stack of ``layers`` cells: at 1/3 and 2/3 of the depth (DARTS)."""
    return layers // 3, 2 * layers // 3


class SearchSpace(nn.Module, ABC):
    """A supernet whose architecture decisions are named :class:`~lightning_nas.arch.Choice` objects.

    Subclasses set :attr:`num_classes` and :attr:`in_channels` and implement :meth:`choices`, :meth:`activate`
    and ``forward``. Spaces hold no training logic.
    """

    num_classes: int
    in_channels: int

    @abstractmethod
    def choices(self) -> list[Choice]:
        """The space's decisions, in a fixed order."""

    @abstractmethod
    def activate(self, arch: Mapping[str, Any] | None) -> None:
        """Run only the sub-network ``arch`` from now on; ``None`` returns to the whole supernet."""

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` for images ``[B, in_channels, H, W]``."""

    def validate_arch(self, arch: Mapping[str, Any]) -> Arch:
        """Check ``arch`` against :meth:`choices`; see :func:`~lightning_nas.arch.validate_arch`."""
        return validate_arch(arch, self.choices())


class DifferentiableSpace(SearchSpace):
    """A space relaxed to continuous architecture parameters (DARTS-style)."""

    @abstractmethod
    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters (alphas)."""

    @abstractmethod
    def export_arch(self) -> Arch:
        """The discrete architecture the current alphas select."""

    def arch_probabilities(self) -> dict[str, dict[str, float]] | None:
        """Per decision, the probability of each candidate under the current architecture parameters.

        ``None`` by default; spaces whose parameters have a natural distribution (a softmax per edge) override it.
        """
        return None

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter that is not an architecture parameter."""
        arch_ids = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch_ids)
