"""One LightningModule per method; each owns its search space."""

from lightning_nas.methods.base import NASModule
from lightning_nas.methods.darts import DARTS
from lightning_nas.methods.ofa import OnceForAll, Phase, progressive_shrinking_phases
from lightning_nas.methods.retrain import Retrain, resolve_genotype

__all__ = [
    "DARTS",
    "NASModule",
    "OnceForAll",
    "Phase",
    "Retrain",
    "progressive_shrinking_phases",
    "resolve_genotype",
]
