"""Decoding the CIFAR-10 JPEG archive: first (decoding) start vs cached start, and decoded images per second.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/image_folder.py [--root DATA_ROOT]

The cache goes to a fresh temporary folder, so the first start always decodes.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from lightning_nas.data._download import default_root
from lightning_nas.data.image_folder import CIFAR10_ARCHIVE, read_image_folder_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="data root (default: $LIGHTNING_NAS_DATA)")
    args = parser.parse_args()
    archive = default_root(args.root) / CIFAR10_ARCHIVE
    with tempfile.TemporaryDirectory() as cache:
        for split in ("train", "test"):
            start = time.perf_counter()
            first = read_image_folder_data(archive, split, cache_dir=cache)
            decoded = time.perf_counter() - start
            start = time.perf_counter()
            again = read_image_folder_data(archive, split, cache_dir=cache)
            cached = time.perf_counter() - start
            assert again.from_cache
            assert not first.from_cache
            count = len(first.dataset)
            print(
                f"{split}: {count} images; first start {decoded:.2f} s ({count / decoded:.0f} images/s incl. reading"
                f" the archive), cached start {cached:.3f} s, {decoded / cached:.0f}x faster"
            )


if __name__ == "__main__":
    main()
