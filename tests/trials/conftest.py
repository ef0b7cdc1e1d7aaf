"""One local Ray for the whole session (2 CPUs, no dashboard), always shut down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lightning_nas.search import TabularBenchmark
from lightning_nas.spaces import NasBench201Format


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """Start Ray once; yields its GCS address so that subprocess drivers can join the same cluster."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def nb201_table(nb201_path: Path) -> TabularBenchmark:
    return TabularBenchmark.load(nb201_path, NasBench201Format())
