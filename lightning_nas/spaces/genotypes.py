"""Genotypes published with the DARTS paper (Liu et al., 2019), for retraining and as test references.

``DARTS_V1`` is the first-order result and ``DARTS_V2`` the second-order one (Table 1: 3.3M parameters at
C=36, 20 cells, 2.76% CIFAR-10 test error).
"""

from __future__ import annotations

from lightning_nas.arch import Genotype

__all__ = ["DARTS_V1", "DARTS_V2", "PUBLISHED_GENOTYPES"]

_CONCAT = (2, 3, 4, 5)

DARTS_V1 = Genotype(
    normal=(
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 2),
    ),
    normal_concat=_CONCAT,
    reduce=(
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("avg_pool_3x3", 0),
    ),
    reduce_concat=_CONCAT,
)

DARTS_V2 = Genotype(
    normal=(
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ),
    normal_concat=_CONCAT,
    reduce=(
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ),
    reduce_concat=_CONCAT,
)

PUBLISHED_GENOTYPES: dict[str, Genotype] = {"DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2}
"""Name -> genotype; ``Retrain(arch="DARTS_V2")`` accepts these names."""
