"""Multi-trial overhead: wall time of N tiny children with 1 vs 2 concurrent Ray trials, and per-trial cost beyond
training (Ray scheduling, Trainer start-up, data loading).

Each child is a tiny DARTS network trained one epoch on the offline 8x8 digits. Figures:
- ``epoch``: the training epoch plus validation alone, measured in-process;
- ``in-process trial``: building the child, the Trainer and the datamodule, then fitting (no Ray);
- ``Ray trial``: the experiment's wall time per trial at concurrency 1 (Ray start-up excluded).

    python benchmarks/trials_overhead.py --trials 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import lightning.pytorch as pl

from lightning_nas.data import DigitsDataModule
from lightning_nas.search import RandomSearch
from lightning_nas.spaces import DartsCellSpace
from lightning_nas.trials import LightningTrial, RetrainFactory, run_trials

RETRAIN = {"in_channels": 1, "num_classes": 10, "channels": 8, "layers": 3, "auxiliary": False, "drop_path_prob": 0.0}


def data() -> DigitsDataModule:
    return DigitsDataModule(batch_size=64, augment=False)


class EpochClock(pl.Callback):
    def __init__(self) -> None:
        self.start, self.seconds = 0.0, 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start


def in_process(archs: list[dict]) -> tuple[float, float]:
    """Median whole-trial and epoch-only seconds of the children, without Ray."""
    whole, epochs = [], []
    for arch in archs:
        start = time.perf_counter()
        clock = EpochClock()
        module = RetrainFactory(RETRAIN)(arch)
        trainer = pl.Trainer(
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[clock],
        )
        trainer.fit(module, datamodule=data())
        whole.append(time.perf_counter() - start)
        epochs.append(clock.seconds)
    return statistics.median(whole), statistics.median(epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    import ray

    space = DartsCellSpace(in_channels=1, num_classes=10, channels=8, layers=3, steps=2)
    strategy = RandomSearch(space.choices(), seed=0)
    archs = [strategy.ask() for _ in range(args.trials)]
    whole, epoch = in_process(archs[:3])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    walls = {}
    try:
        for concurrency in (1, 2):
            with tempfile.TemporaryDirectory() as directory:
                trial = LightningTrial(data, RetrainFactory(RETRAIN), max_epochs=1)
                start = time.perf_counter()
                run_trials(
                    RandomSearch(space.choices(), seed=0),
                    trial,
                    directory,
                    num_trials=args.trials,
                    concurrency=concurrency,
                    progress=False,
                )
                walls[concurrency] = time.perf_counter() - start
    finally:
        ray.shutdown()
    per_trial = walls[1] / args.trials
    print(
        f"{args.trials} children x 1 epoch of 8x8 digits, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"{os.cpu_count()} CPUs"
    )
    print("| concurrency | wall s | s per trial |\n| --- | --- | --- |")
    for concurrency, wall in walls.items():
        print(f"| {concurrency} | {wall:.1f} | {wall / args.trials:.2f} |")
    print(
        f"\nepoch (train + val) in-process: {epoch:.2f} s; whole in-process trial (child, Trainer, data, fit): "
        f"{whole:.2f} s; Ray trial at concurrency 1: {per_trial:.2f} s"
    )
    print(
        f"overhead beyond training per trial: {per_trial - epoch:.2f} s "
        f"(Trainer start-up + data {whole - epoch:.2f} s, Ray scheduling + worker {per_trial - whole:.2f} s)"
    )


if __name__ == "__main__":
    main()
