"""One LightningModule per method; each owns its search space."""

from lightning_nas.methods.base import NASModule
from lightning_nas.methods.bignas import BigNAS
from lightning_nas.methods.cars import CARS
from lightning_nas.methods.darts import DARTS
from lightning_nas.methods.darts_minus import DARTSMinus
from lightning_nas.methods.drnas import DrNAS
from lightning_nas.methods.enas import ENAS
from lightning_nas.methods.gdas import GDAS
from lightning_nas.methods.ofa import OnceForAll, Phase, progressive_shrinking_phases
from lightning_nas.methods.pc_darts import PCDARTS
from lightning_nas.methods.retrain import Retrain, resolve_genotype
from lightning_nas.methods.retrain_macro import RetrainMacro, resolve_macro_arch
from lightning_nas.methods.smash import SMASH, RankedArch
from lightning_nas.methods.spos import SPOS

__all__ = [
    "BigNAS",
    "CARS",
    "DARTS",
    "DARTSMinus",
    "DrNAS",
    "GDAS",
    "PCDARTS",
    "ENAS",
    "SMASH",
    "SPOS",
    "RankedArch",
    "NASModule",
    "Retrain",
    "RetrainMacro",
    "resolve_genotype",
    "resolve_macro_arch",
    "OnceForAll",
    "Phase",
    "progressive_shrinking_phases",
]
