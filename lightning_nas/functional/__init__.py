"""Pure math of the methods, each checked against exact autograd or a closed form in the tests."""

from lightning_nas.functional.darts import darts_arch_gradient, finite_difference_hvp
from lightning_nas.functional.distillation import soft_target_cross_entropy
from lightning_nas.functional.mnasnet import mnasnet_reward
from lightning_nas.functional.reinforce import reinforce_loss, update_baseline

__all__ = [
    "darts_arch_gradient",
    "finite_difference_hvp",
    "mnasnet_reward",
    "reinforce_loss",
    "soft_target_cross_entropy",
    "update_baseline",
]
