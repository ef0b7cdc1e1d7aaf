"""One LightningModule per method; each owns its search space."""

from lightning_nas.methods.base import NASModule
from lightning_nas.methods.darts import DARTS
from lightning_nas.methods.enas import ENAS
from lightning_nas.methods.retrain import Retrain, resolve_genotype
from lightning_nas.methods.retrain_macro import RetrainMacro, resolve_macro_arch

__all__ = ["DARTS", "ENAS", "NASModule", "Retrain", "RetrainMacro", "resolve_genotype", "resolve_macro_arch"]
