"""Policies over any space's choices: the ENAS LSTM controller and a uniform random baseline."""

from lightning_nas.controllers.base import Policy, PolicySample
from lightning_nas.controllers.lstm import LSTMController
from lightning_nas.controllers.uniform import UniformPolicy

__all__ = ["LSTMController", "Policy", "PolicySample", "UniformPolicy"]
