"""Train an ENAS macro architecture from scratch: the network :class:`~lightning_nas.spaces.EnasMacroNetwork` builds.

The DARTS-cell counterpart is :class:`~lightning_nas.methods.Retrain`; this module takes what ``lightning-nas export``
writes for an ENAS macro search (a ``layer{i}/op``, ``layer{i}/skip{j}`` mapping). Defaults follow the reference
code's final macro training (``scripts/cifar10_macro_final.sh``): SGD with Nesterov momentum 0.9, learning rate 0.05
annealed by cosine to 0.0005, weight decay 2.5e-4.

    lightning-nas fit --model=lightning_nas.methods.RetrainMacro --model.arch=architecture.json \\
        --data=lightning_nas.data.CIFAR10DataModule --trainer.gradient_clip_val=5
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor
from typing_extensions import override

from lightning_nas.arch import Arch, load_arch
from lightning_nas.methods.retrain import TrainFromScratch
from lightning_nas.spaces.enas_macro import EnasMacroNetwork

__all__ = ["RetrainMacro", "resolve_macro_arch"]


def resolve_macro_arch(arch: str | dict[str, Any]) -> Arch:
    """A macro architecture from a mapping, its JSON text, or a JSON file path.

    Raises:
        ValueError: not a macro architecture (for instance a DARTS genotype, which :class:`Retrain` trains).
        FileNotFoundError: a path that does not exist.
    """
    if isinstance(arch, dict):
        loaded: Any = arch
    elif arch.lstrip().startswith("{"):
        loaded = json.loads(arch)
    else:
        loaded = load_arch(Path(arch))
    if not isinstance(loaded, dict) or "layer0/op" not in loaded:
        raise ValueError(f"{arch!r} is not an ENAS macro architecture (no 'layer0/op'); DARTS genotypes go to Retrain")
    return loaded


class RetrainMacro(TrainFromScratch):
    """Train the network of an ENAS macro architecture from scratch.

    Args:
        arch: a macro architecture JSON file (what ``lightning-nas export`` writes), or its JSON text.
        in_channels: image channels.
        num_classes: classifier outputs.
        channels: channels of the first layers, doubled at each reduction (96 in the reference final training).
        lr: initial SGD learning rate (0.05), annealed by cosine to ``lr_min`` (0.0005).
        lr_min: final learning rate.
        momentum: Nesterov momentum (0.9).
        weight_decay: weight decay (2.5e-4).

    Example:
        >>> import torch
        >>> model = RetrainMacro('{"layer0/op": "conv_3x3", "layer1/op": "max_pool_3x3", "layer1/skip0": 1}',
        ...                      in_channels=1, channels=4)
        >>> model(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    CHECKPOINT_METHOD = "RetrainMacro"
    CHECKPOINT_NETWORK = "EnasMacroNetwork"

    def __init__(
        self,
        arch: str,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        channels: int = 96,
        lr: float = 0.05,
        lr_min: float = 0.0005,
        momentum: float = 0.9,
        weight_decay: float = 2.5e-4,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            lr=lr,
            lr_min=lr_min,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=True,
        )
        self.save_hyperparameters()
        self.arch = resolve_macro_arch(arch)
        self.network = EnasMacroNetwork(self.arch, in_channels=in_channels, num_classes=num_classes, channels=channels)

    @override
    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    @override
    def export(self) -> Arch:
        """The architecture being trained."""
        return dict(self.arch)
