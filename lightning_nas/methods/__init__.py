"""One LightningModule per method; each owns its search space."""

from lightning_nas.methods.base import NASModule
from lightning_nas.methods.darts import DARTS
from lightning_nas.methods.enas import ENAS
from lightning_nas.methods.retrain import Retrain, resolve_genotype

__all__ = ["DARTS", "ENAS", "NASModule", "Retrain", "resolve_genotype"]
