"""Multi-trial NAS: every child trained (or looked up) as its own trial, the ask/tell strategies driving Ray Tune.

Ray is optional (``pip install "lightning-nas[trials]"``) and imported only when an experiment runs.
"""

from lightning_nas.trials._driver import TrialDriver
from lightning_nas.trials._records import TrialRecord, load_records
from lightning_nas.trials.rewards import MnasNetReward
from lightning_nas.trials.runner import TrialsResult, require_ray, run_trials
from lightning_nas.trials.scaling import EFFICIENTNET_PRESETS, GridSearch, coefficient_grid, scale_network
from lightning_nas.trials.trainables import LightningTrial, ReportEpochs, RetrainFactory, TabularTrial

__all__ = [
    "EFFICIENTNET_PRESETS",
    "GridSearch",
    "LightningTrial",
    "MnasNetReward",
    "ReportEpochs",
    "RetrainFactory",
    "TabularTrial",
    "TrialDriver",
    "TrialRecord",
    "TrialsResult",
    "load_records",
    "coefficient_grid",
    "require_ray",
    "run_trials",
    "scale_network",
]
