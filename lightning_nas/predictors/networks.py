"""The network an architecture of any space builds, freshly initialised from a seed, and its proxy scores.

- NAS-Bench-201: the standalone :class:`~lightning_nas.spaces.NasBench201Network` of the cell (affine BatchNorm,
  as trained from scratch);
- elastic spaces: :meth:`~lightning_nas.spaces.ElasticSpace.export_subnet` of a supernet initialised from the seed;
- every other space (DARTS cell, ENAS macro, a user's space): a copy of the space, re-initialised from the seed,
  with ``arch`` activated, i.e. the path of the supernet the architecture runs; parameters of other paths get
  no gradient and count for no proxy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_nas.predictors.proxies import PROXIES, check_finite, compute_proxies, describe
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.spaces.elastic import ElasticSpace
from lightning_nas.spaces.nasbench201 import NasBench201Network, NasBench201Space

__all__ = ["ALL_PROXIES", "build_network", "score_architecture"]

ALL_PROXIES: tuple[str, ...] = (*PROXIES, "flops")
"""Every proxy :func:`score_architecture` computes: :data:`~lightning_nas.predictors.proxies.PROXIES` and FLOPs."""


def _reset(module: nn.Module) -> None:
    for child in module.modules():
        reset = getattr(child, "reset_parameters", None)
        if callable(reset):
            reset()


def build_network(space: SearchSpace, arch: Mapping[str, Any], *, seed: int = 0) -> nn.Module:
    """A freshly initialised network of ``arch`` in ``space``; the same ``seed`` builds the same weights.

    ``space`` itself is not changed (its active architecture and weights stay as they were).
    """
    valid = space.validate_arch(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(space, NasBench201Space):
            return NasBench201Network(
                valid,
                in_channels=space.in_channels,
                num_classes=space.num_classes,
                channels=space.channels,
                cells_per_stage=space.cells_per_stage,
                ops=space.ops,
                affine=True,
            )
        network = copy.deepcopy(space)
        _reset(network)
        if isinstance(network, ElasticSpace):
            return network.export_subnet(valid)
        network.activate(valid)
        return network


def score_architecture(
    space: SearchSpace,
    arch: Mapping[str, Any],
    batch: tuple[Tensor, Tensor],
    proxies: Sequence[str] = ALL_PROXIES,
    *,
    seed: int = 0,
) -> dict[str, float]:
    """Proxy scores of ``arch``'s freshly built network (:func:`build_network`) on one ``(images, labels)`` batch.

    Args:
        space: the search space.
        arch: one of its architectures.
        batch: images ``[B, C, H, W]`` and labels ``[B]``.
        proxies: names from :data:`ALL_PROXIES`.
        seed: initialises the network and seeds every proxy.

    Raises:
        ValueError: an unknown proxy, an invalid architecture, or input of a shape the network rejects.
        ProxyError: a non-finite proxy value (named with the architecture).
    """
    unknown = [name for name in proxies if name not in ALL_PROXIES]
    if unknown:
        raise ValueError(f"unknown proxies {unknown}; valid proxies: {', '.join(ALL_PROXIES)}")
    network = build_network(space, arch, seed=seed).to(batch[0].device)
    label = describe(space.validate_arch(arch))
    scores = compute_proxies(network, batch, [p for p in proxies if p != "flops"], seed=seed, label=label)
    if "flops" in proxies:
        from lightning_nas.search.constraints import count_cost  # search/ imports predictors: import here

        images = batch[0]
        if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
            raise ValueError(f"flops needs square images [B, C, H, H], got shape {tuple(images.shape)}")
        probe = copy.deepcopy(space)
        scores["flops"] = check_finite("flops", float(count_cost(probe, arch, image_size=images.shape[-1]).flops))
    return {name: scores[name] for name in proxies}
