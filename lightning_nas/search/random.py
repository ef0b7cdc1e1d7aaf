"""Random search: every proposal drawn uniformly from the space (the baseline every strategy must beat)."""

from __future__ import annotations

from lightning_nas.arch import Arch
from lightning_nas.search.base import SearchStrategy

__all__ = ["RandomSearch"]


class RandomSearch(SearchStrategy):
    """Uniform sampling over the space's choices, subject to the constraints.

    Example:
        >>> from lightning_nas.arch import Choice
        >>> RandomSearch([Choice("op", ("conv", "pool"))], seed=0).ask()["op"] in ("conv", "pool")
        True
    """

    def propose(self) -> Arch:
        return self.random_arch()
