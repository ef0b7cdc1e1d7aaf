"""Stop differentiable search before it collapses to skip connections (the DARTS+ early-stopping rule)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_nas.arch import Arch
from lightning_nas.methods.base import NASModule

__all__ = ["CollapseGuard", "count_op"]


def count_op(arch: Arch, op: str, group: str | None = "normal") -> int:
    """How many choices of ``group`` (names starting with ``"{group}/"``; every choice if ``None``) select ``op``.

    Example:
        >>> arch = {"normal/node2/op0": "skip_connect", "normal/node2/in0": 1, "reduce/node2/op0": "skip_connect"}
        >>> count_op(arch, "skip_connect"), count_op(arch, "skip_connect", group=None)
        (1, 2)
    """
    prefix = "" if group is None else f"{group}/"
    return sum(1 for name, value in arch.items() if name.startswith(prefix) and value == op)


class CollapseGuard(pl.Callback):
    """Warn, and optionally stop training, once the architecture's ``group`` cell holds ``max_count`` or more ``op``.

    DARTS tends to fill the normal cell with parameter-free skip connections as the search goes on. DARTS+
    (Liang et al., 2019, Sec. 3.2, "Criterion 1") stops the search when the normal cell has two or more skip
    connections; ``CollapseGuard(max_count=2, stop=True)`` is that rule. The count is taken from
    ``pl_module.current_arch()`` at the end of every training epoch, so it works for any method whose architecture
    names its cells' choices ``"normal/..."`` (DARTS, ENAS, SPOS and GDAS on the DARTS cell space).

    Args:
        max_count: the count that triggers it (2 in DARTS+).
        op: the op to count.
        group: the choices to count in (``"normal"``: the normal cell); ``None`` counts every choice.
        stop: also stop training (``trainer.should_stop``); otherwise only warn.

    Example:
        >>> guard = CollapseGuard(max_count=2, stop=True)
        >>> guard.check({"normal/node2/op0": "skip_connect", "normal/node2/op1": "skip_connect"})
        2
    """

    def __init__(
        self, *, max_count: int = 2, op: str = "skip_connect", group: str | None = "normal", stop: bool = False
    ) -> None:
        if max_count < 1:
            raise ValueError(f"max_count must be >= 1, got {max_count}")
        self.max_count, self.op, self.group, self.stop = max_count, op, group, stop
        self.triggered_epoch: int | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(op=self.op, group=self.group)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"triggered_epoch": self.triggered_epoch}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.triggered_epoch = state_dict["triggered_epoch"]

    def check(self, arch: Arch) -> int | None:
        """The count of ``op`` in ``arch`` if it reaches ``max_count``, else ``None``."""
        count = count_op(arch, self.op, self.group)
        return count if count >= self.max_count else None

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, NASModule):
            return
        count = self.check(pl_module.current_arch())
        if count is None:
            return
        where = f"the {self.group} cell" if self.group else "the architecture"
        action = "stopping the search (DARTS+ rule)" if self.stop else "pass stop=True to stop here (DARTS+ rule)"
        rank_zero_warn(
            f"CollapseGuard: {where} has {count} {self.op} choices at epoch {trainer.current_epoch} "
            f"(limit {self.max_count}): the search is collapsing; {action}. Architecture: {pl_module.export()}"
        )
        if self.triggered_epoch is None:
            self.triggered_epoch = trainer.current_epoch
        if self.stop:
            trainer.should_stop = True  # the architecture is the same on every rank, so every rank stops
