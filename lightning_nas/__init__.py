"""Neural architecture search methods as PyTorch Lightning modules."""

__version__ = "0.1.0"

__all__ = ["__version__"]
