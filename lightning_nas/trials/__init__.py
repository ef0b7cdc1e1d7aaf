"""Multi-trial NAS: every child trained (or looked up) as its own trial, the ask/tell strategies driving Ray Tune.

Ray is optional (``pip install "lightning-nas[trials]"``) and imported only when an experiment runs.
"""

from lightning_nas.trials._driver import TrialDriver
from lightning_nas.trials._records import TrialRecord, load_records
from lightning_nas.trials.rewards import MnasNetReward
from lightning_nas.trials.runner import TrialsResult, require_ray, run_trials
from lightning_nas.trials.scaling import (
    EFFICIENTNET_PRESETS,
    GridSearch,
    ScaledSubnet,
    coefficient_grid,
    scale_mobilenet_subnet,
    scale_network,
    write_family,
    write_mobilenet_family,
)
from lightning_nas.trials.trainables import LightningTrial, ReportEpochs, RetrainFactory, TabularTrial

__all__ = [
    "EFFICIENTNET_PRESETS",
    "GridSearch",
    "LightningTrial",
    "MnasNetReward",
    "ReportEpochs",
    "RetrainFactory",
    "ScaledSubnet",
    "TabularTrial",
    "TrialDriver",
    "TrialRecord",
    "TrialsResult",
    "load_records",
    "coefficient_grid",
    "require_ray",
    "run_trials",
    "scale_mobilenet_subnet",
    "scale_network",
    "write_family",
    "write_mobilenet_family",
]
