"""Pure math of the methods, each checked against exact autograd or a closed form in the tests."""

from lightning_nas.functional.darts import darts_arch_gradient, finite_difference_hvp

__all__ = ["darts_arch_gradient", "finite_difference_hvp"]
