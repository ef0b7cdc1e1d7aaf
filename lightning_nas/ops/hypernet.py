"""A HyperNet that generates convolution weights from an encoding of the architecture (SMASH, Brock et al., 2018).

SMASH (Sec. 3) trains an auxiliary network ``H`` that maps an encoding ``c`` of a sampled architecture to the
weights of that architecture's layers, ``W = H(c)``; the paper generates the 1x1 convolutions and learns the other
weights freely. This module is that map for any space of named choices:

* ``c`` is the one-hot encoding of every choice, concatenated in the space's choice order (:func:`encode_arch`);
* ``h = relu(U c / sqrt(n_choices) + a)`` is a ``hidden``-wide embedding of the architecture;
* ``W = b + V h`` is one flat vector, cut into one slice per generated convolution and reshaped to its weight's
  shape (:meth:`HyperNet.forward`).

The simplification, against the paper: its encoding is a memory-bank read/write pattern laid out as a spatial
tensor, and its HyperNet is a convolutional network whose output at each position generates the layer at that
position (conditioned locally). Here the encoding is the plain one-hot choice vector and every slice is conditioned
on the whole architecture through one MLP, which works unchanged on any space with a discrete view (the NAS-Bench-201
cell, the DARTS cell). ``b`` starts at the convolutions' own initial weights and ``V`` at ``arch_scale`` times their
standard deviation, so at the start each child's weights are a usual initialisation plus an architecture-dependent
part of comparable size.

Example:
    >>> from lightning_nas.arch import Choice
    >>> choices = [Choice("op", ("a", "b")), Choice("width", (1, 2, 3))]
    >>> encode_arch({"op": "b", "width": 3}, choices).tolist()
    [0.0, 1.0, 0.0, 0.0, 1.0]
    >>> hypernet = HyperNet(choices, {"conv.weight": torch.zeros(4, 2, 1, 1)}, hidden=8)
    >>> hypernet(encode_arch({"op": "a", "width": 1}, choices))["conv.weight"].shape
    torch.Size([4, 2, 1, 1])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_nas.arch import Choice

__all__ = ["GENERATE_SCOPES", "GenerateScope", "HyperNet", "encode_arch", "generated_convolutions"]

GenerateScope = Literal["1x1", "all"]
GENERATE_SCOPES: tuple[str, ...] = ("1x1", "all")
"""``"1x1"``: the pointwise convolutions (the paper's choice); ``"all"``: every convolution, depthwise included."""


def encode_arch(arch: Mapping[str, Any], choices: Sequence[Choice], device: torch.device | None = None) -> Tensor:
    """The one-hot encoding of ``arch``: one block per choice (in ``choices`` order), a 1 at the chosen candidate.

    Raises:
        ValueError: ``arch`` misses a choice or holds a value that is not one of its candidates.
    """
    encoding = torch.zeros(sum(len(c.candidates) for c in choices), device=device)
    offset = 0
    for choice in choices:
        if choice.name not in arch:
            raise ValueError(
                f"architecture has no value for choice {choice.name!r}; choices: {[c.name for c in choices]}"
            )
        value = arch[choice.name]
        if value not in choice.candidates:
            raise ValueError(
                f"choice {choice.name!r} has no candidate {value!r}; valid: {', '.join(map(str, choice.candidates))}"
            )
        encoding[offset + choice.candidates.index(value)] = 1.0
        offset += len(choice.candidates)
    return encoding


def generated_convolutions(module: nn.Module, scope: GenerateScope) -> dict[str, nn.Conv2d]:
    """The convolutions of ``module`` whose weights a HyperNet generates, by qualified name.

    ``"1x1"``: ungrouped convolutions with a 1x1 kernel; ``"all"``: every ``nn.Conv2d``.

    Raises:
        ValueError: an unknown ``scope`` (the message lists the valid ones).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1, groups=4))
        >>> list(generated_convolutions(net, "1x1")), len(generated_convolutions(net, "all"))
        (['1'], 3)
    """
    if scope not in GENERATE_SCOPES:
        raise ValueError(f"generate must be one of {', '.join(map(repr, GENERATE_SCOPES))}; got {scope!r}")
    return {
        name: conv
        for name, conv in module.named_modules()
        if isinstance(conv, nn.Conv2d) and (scope == "all" or (conv.kernel_size == (1, 1) and conv.groups == 1))
    }


class HyperNet(nn.Module):
    """``W(c) = b + V relu(U c / sqrt(n_choices) + a)``, cut into named weight tensors.

    Args:
        choices: the space's choices; the encoding's layout.
        initial: the generated weights by name (e.g. ``"layers.2.edges.0.ops.2.body.0.weight"``), as tensors of
            their shapes; their values start ``b``, their standard deviations scale ``V``'s initialisation.
        hidden: width of the architecture embedding ``h``.
        arch_scale: initial size of the architecture-dependent part relative to the weights' own spread.
    """

    def __init__(
        self, choices: Sequence[Choice], initial: Mapping[str, Tensor], *, hidden: int = 32, arch_scale: float = 0.5
    ) -> None:
        super().__init__()
        if not initial:
            raise ValueError("a HyperNet needs at least one weight to generate")
        if hidden < 1 or arch_scale < 0:
            raise ValueError(f"need hidden >= 1 and arch_scale >= 0; got {hidden=}, {arch_scale=}")
        self.choices = list(choices)
        self.names = tuple(initial)
        self.shapes = tuple(tuple(initial[name].shape) for name in self.names)
        self.sizes = tuple(math.prod(shape) for shape in self.shapes)
        width = sum(len(c.candidates) for c in self.choices)
        self.encoder = nn.Linear(width, hidden)
        self.decoder = nn.Linear(hidden, sum(self.sizes))
        with torch.no_grad():
            self.encoder.weight.normal_()
            self.encoder.bias.zero_()
            self.decoder.bias.copy_(torch.cat([initial[name].detach().flatten().float() for name in self.names]))
            rows = self.decoder.weight.split(self.sizes)
            for row, name in zip(rows, self.names):
                spread = float(initial[name].float().std()) if initial[name].numel() > 1 else 1.0
                row.normal_(0.0, arch_scale * spread / math.sqrt(hidden))
        self._norm = 1.0 / math.sqrt(max(1, len(self.choices)))

    @property
    def num_generated(self) -> int:
        """How many weight values one architecture's generation yields."""
        return sum(self.sizes)

    def encode(self, arch: Mapping[str, Any]) -> Tensor:
        """:func:`encode_arch` on this HyperNet's choices and device."""
        return encode_arch(arch, self.choices, device=self.decoder.weight.device)

    def flat(self, encoding: Tensor) -> Tensor:
        """The whole generated vector ``W(c)`` for one encoding ``c`` of shape ``[width]``."""
        hidden = torch.relu(self.encoder(encoding * self._norm))
        return self.decoder(hidden)

    def forward(self, encoding: Tensor) -> dict[str, Tensor]:
        """The generated weights of the architecture ``encoding`` encodes, by name, each of its tensor's shape."""
        pieces = self.flat(encoding).split(self.sizes)
        return {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes)}
