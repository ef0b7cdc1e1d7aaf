"""Shared fixtures: real data location, thread limits, deterministic seeds."""

from __future__ import annotations

import os
from pathlib import Path

# Two processes on two cores oversubscribe badly with the default thread count. Under pytest-xdist (the
# default, ``-n auto``) each worker takes its share of the cores, whatever the shell had set.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _WORKERS))
else:
    os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

DATA_ENV = "LIGHTNING_NAS_DATA"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder with the real datasets (``MNIST/raw``, ``FashionMNIST/raw``, ``nasbench201``).

    Read from ``$LIGHTNING_NAS_DATA``; falls back to ``../shared/data`` beside the checkout. A missing
    folder fails the test: tests that need real data never skip.
    """
    configured = os.environ.get(DATA_ENV)
    root = Path(configured) if configured else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (root / "FashionMNIST" / "raw").is_dir():
        pytest.fail(f"real data not found at {root}; set {DATA_ENV} to the folder holding FashionMNIST/ and MNIST/")
    return root


@pytest.fixture(scope="session")
def nb201_path(data_root: Path) -> Path:
    """The NAS-Bench-201 table in the real data folder (all 15,625 cells, 12-epoch results); missing fails."""
    path = data_root / "nasbench201" / "nb201_12epoch.csv"
    if not path.is_file():
        pytest.fail(f"the NAS-Bench-201 table is missing at {path}")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
