"""A real multi-trial run on the offline digits: the NAS-RL controller against random search.

24 children (DARTS cells, tiny network) x 1 epoch, 2 concurrent Ray trials, per seed; the controller updates every
4 finished children. Prints, per seed, the controller's mean reward over its first and last third of children and
both strategies' best child.

    python benchmarks/trials_digits.py --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from lightning_nas.data import DigitsDataModule
from lightning_nas.search import PolicySearch, RandomSearch, SearchStrategy
from lightning_nas.spaces import DartsCellSpace
from lightning_nas.trials import LightningTrial, RetrainFactory, TrialsResult, run_trials

RETRAIN = {
    "in_channels": 1,
    "num_classes": 10,
    "channels": 8,
    "layers": 3,
    "auxiliary": False,
    "drop_path_prob": 0.0,
    "lr": 0.05,
}


def data() -> DigitsDataModule:
    return DigitsDataModule(batch_size=64, augment=False)


def run(strategy: SearchStrategy, children: int) -> TrialsResult:
    with tempfile.TemporaryDirectory() as directory:
        trial = LightningTrial(data, RetrainFactory(RETRAIN), max_epochs=1, input_shape=(1, 8, 8))
        return run_trials(strategy, trial, directory, num_trials=children, concurrency=2, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--children", type=int, default=24)
    args = parser.parse_args()
    import ray

    space = DartsCellSpace(in_channels=1, num_classes=10, channels=8, layers=3, steps=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    start = time.perf_counter()
    rows = []
    try:
        for seed in range(args.seeds):
            controller = PolicySearch(
                space.choices(), node_choices=space.node_choices(), batch_size=4, learning_rate=0.0035, seed=seed
            )
            nasrl = run(controller, args.children)
            rand = run(RandomSearch(space.choices(), seed=seed), args.children)
            rewards = [r.metrics.get("accuracy", 0.0) for r in sorted(nasrl.records, key=lambda r: r.trial_id)]
            third = len(rewards) // 3
            rows.append(
                (
                    seed,
                    statistics.fmean(rewards[:third]),
                    statistics.fmean(rewards[-third:]),
                    nasrl.best.metrics["accuracy"],
                    rand.best.metrics["accuracy"],
                )
            )
    finally:
        ray.shutdown()
    print(f"{args.children} children x 1 epoch on digits, 2 concurrent; controller REINFORCE every 4 children\n")
    print("| seed | NAS-RL mean acc, first third | last third | NAS-RL best | random best |")
    print("| --- | --- | --- | --- | --- |")
    for seed, first, last, best, rand in rows:
        print(f"| {seed} | {first:.3f} | {last:.3f} | {best:.3f} | {rand:.3f} |")
    print(f"\n{time.perf_counter() - start:.0f} s wall")


if __name__ == "__main__":
    main()
