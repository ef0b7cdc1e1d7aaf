"""Training throughput of every method with 1 and with 2 CPU processes (gloo DDP), as a table.

Each method runs on a small-but-not-tiny space (DARTS cell C=8, 5 cells, 3 nodes; NAS-Bench-201 C=8; a narrow
elastic MobileNetV3 for OFA and BigNAS) with 16x16 images and ``--batch`` images per process and loader. After
``--warmup`` batches, ``--steps`` batches are timed; images/s counts the weight batches of all processes (the
bilevel methods also read an architecture batch of the same size per step; ENAS's controller batches count as
batches that train no weights). Both settings run every process with one thread, so 2 processes on 2 cores can at
best double the throughput; on a 2-core machine this measures DDP's overhead (gradient all-reduce, the
rank-agreement collectives), not a speed-up. Short runs are noisy: use ``--steps 12`` or more for figures.

    python benchmarks/ddp_scaling.py                     # every method
    python benchmarks/ddp_scaling.py --methods enas,ofa --steps 5

The 2-process runs relaunch this script as ranks 0 and 1 (as ``torchrun`` would) and run every method in one
process group; rank 0 writes the timings to a temporary JSON file that the parent reads.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

from lightning_nas.data import SyntheticDataModule  # noqa: E402
from lightning_nas.methods import CARS, DARTS, ENAS, SPOS, BigNAS, OnceForAll  # noqa: E402
from lightning_nas.ops import ENAS_MICRO_OPS  # noqa: E402
from lightning_nas.spaces import DartsCellSpace, ElasticMobileNetV3, NasBench201Space  # noqa: E402

IMAGE_SIZE, NUM_CLASSES = 16, 10


def _cell(**kwargs: Any) -> DartsCellSpace:
    return DartsCellSpace(in_channels=3, num_classes=NUM_CLASSES, channels=8, layers=5, steps=3, **kwargs)


def _nb201() -> NasBench201Space:
    return NasBench201Space(in_channels=3, num_classes=NUM_CLASSES, channels=8, cells_per_stage=2)


def _elastic() -> ElasticMobileNetV3:
    return ElasticMobileNetV3(
        in_channels=3,
        num_classes=NUM_CLASSES,
        preset="cifar",
        widths=(8, 8, 8, 16, 16, 24, 24, 48, 64),
        resolutions=(12, 16),
    )


def _ofa() -> OnceForAll:
    return OnceForAll(_elastic(), phase_epochs=[0, 0, 0, 0, 0, 1], phase_warmup_epochs=[0] * 6, calibration_images=0)


# name -> (module factory, bilevel data?)
METHODS: dict[str, tuple[Callable[[], pl.LightningModule], bool]] = {
    "darts-first": (lambda: DARTS(_cell(), order="first"), True),
    "darts-second": (lambda: DARTS(_cell(), order="second"), True),
    "darts-nb201": (lambda: DARTS(_nb201(), order="second"), True),
    "enas": (lambda: ENAS(_cell(ops=ENAS_MICRO_OPS), weight_steps=4, controller_steps=1, controller_samples=2), True),
    "spos": (lambda: SPOS(_cell(), image_size=IMAGE_SIZE), False),
    "cars": (lambda: CARS(_cell(), population_size=4, image_size=IMAGE_SIZE), False),
    "ofa": (_ofa, False),
    "bignas": (lambda: BigNAS(_elastic(), calibration_images=0, warmup_epochs=0), False),
}


class Clock(pl.Callback):
    """Wall time of the batches after the warm-up (synchronised across ranks by the step's own collectives)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.batches, self.start, self.elapsed = warmup, 0, 0.0, 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        self.batches += 1
        if self.batches == self.warmup:
            self.start = time.perf_counter()
        elif self.batches > self.warmup:
            self.elapsed = time.perf_counter() - self.start


def measure(name: str, devices: int, batch: int, warmup: int, steps: int) -> float:
    """Images per second (all processes together) of ``steps`` timed batches of ``name``."""
    build, bilevel = METHODS[name]
    pl.seed_everything(0)
    module = build()
    per_loader = batch * devices * (warmup + steps + 2)  # one epoch covers the run: no epoch boundary is timed
    data = SyntheticDataModule(
        num_samples=2 * per_loader if bilevel else per_loader,
        num_classes=NUM_CLASSES,
        in_channels=3,
        image_size=IMAGE_SIZE,
        search=bilevel,
        batch_size=batch,
    )
    clock = Clock(warmup)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_find_unused_parameters_true" if devices > 1 else "auto",
        max_steps=-1,
        max_epochs=1,
        limit_train_batches=warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=data)
    return batch * devices * steps / clock.elapsed


def _launch_ranks(args: list[str], out: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2", "NODE_RANK": "0"}
    ranks = [
        subprocess.Popen(
            [sys.executable, __file__, *args, "--out", str(out)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank), "PYTHONWARNINGS": "ignore"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for rank in range(2)
    ]
    if any(rank.wait() for rank in ranks):
        raise SystemExit("a 2-process run failed; rerun one method with --methods to see its error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--batch", type=int, default=16, help="images per process and loader")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.methods.split(",")
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    torch.set_num_threads(1)
    if "LOCAL_RANK" in os.environ:  # a rank of the 2-process run
        results = {name: measure(name, 2, args.batch, args.warmup, args.steps) for name in names}
        if int(os.environ["RANK"]) == 0:
            args.out.write_text(json.dumps(results))
        return
    single = {name: measure(name, 1, args.batch, args.warmup, args.steps) for name in names}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "ddp.json"
        _launch_ranks(sys.argv[1:], out)
        double = json.loads(out.read_text())
    print(f"\nimages/s, batch {args.batch} per process, {args.steps} timed batches after {args.warmup}, 1 thread each")
    print(f"{'method':<14}{'1 process':>12}{'2 processes':>14}{'ratio':>8}")
    for name in names:
        print(f"{name:<14}{single[name]:>12.1f}{double[name]:>14.1f}{double[name] / single[name]:>8.2f}")


if __name__ == "__main__":
    main()
