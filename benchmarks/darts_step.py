"""Speed and peak memory of one DARTS search step (architecture step + weight step).

The paper's CIFAR search supernet: C=16, 8 cells, 4 nodes, the eight DARTS ops, batch 64 of 3x32x32 (per half).
Prints images/s and the peak resident memory of each configuration, each measured in a fresh process of the same
run. ``images/s`` counts the training batch only (batch / median step time); ``both halves`` counts the training
and the validation batch a step consumes (2 x batch / step time), the convention some other tools report.

The baseline (``reference-*``) is the same supernet run the way the widely copied reference implementations
run it: every op applies its own ReLU, the edge output is ``sum(w * op(x))`` over all ops including ``none``,
depthwise convolutions use the library's backward, and the architecture step computes gradients for every
parameter. Ratios are against ``reference-first-fp32``.

DARTS- (``minus-own-*``, ``minus-shared-*``: its auxiliary skip with a reduction of its own on stride-2 edges, or
the candidate skip's) runs the same step on the same supernet; compare it with ``--baseline``.

    python benchmarks/darts_step.py                 # all configurations, batch 64
    python benchmarks/darts_step.py --batch 16 --steps 2 --configs first-fp32-cl
    python benchmarks/darts_step.py --configs minus-shared-first-fp32-cl minus-own-first-fp32-cl \
        --baseline minus-shared-first-fp32-cl
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CONFIGS = ["reference-first-fp32"] + [
    f"{order}-{precision}{'-cl' if cl else ''}"
    for order in ("first", "second")
    for precision in ("fp32", "bf16")
    for cl in (False, True)
]
BASELINE = "reference-first-fp32"
MINUS = ("minus-own-", "minus-shared-")  # DARTS- and its reduction_skip
CHOICES = CONFIGS + [prefix + config for prefix in MINUS for config in CONFIGS[1:]]


def _use_reference_implementation() -> None:
    """Swap in the reference-style pieces (see the module docstring); only this benchmark process is affected."""
    import contextlib

    from torch import nn

    from lightning_nas.functional import darts as functional_darts
    from lightning_nas.ops import depthwise, mixed

    def naive_mixed_forward(self, x, weights, relu_x=None):  # noqa: ANN001, ANN202, ARG001
        return sum(w * op(x) for w, op in zip(weights, self.ops))

    mixed.MixedOp.forward = naive_mixed_forward  # type: ignore[method-assign]
    depthwise.DepthwiseConv2d.forward = nn.Conv2d.forward  # type: ignore[method-assign]
    functional_darts._frozen = lambda tensors: contextlib.nullcontext()  # type: ignore[assignment]


def run_one(config: str, batch: int, steps: int, warmup: int, threads: int) -> dict[str, float]:
    import lightning.pytorch as pl
    import torch

    from lightning_nas.methods import DARTS, DARTSMinus
    from lightning_nas.spaces import DartsCellSpace

    torch.set_num_threads(threads)
    if config.startswith("reference-"):
        _use_reference_implementation()
        config = config.removeprefix("reference-")
    method, options = DARTS, {}
    for prefix in MINUS:
        if config.startswith(prefix):
            method, options = DARTSMinus, {"reduction_skip": prefix.split("-")[1]}
            config = config.removeprefix(prefix)
    order, precision, *rest = config.split("-")
    channels_last = bool(rest)
    torch.manual_seed(0)
    space = DartsCellSpace(channels=16, layers=8, num_classes=10)
    model = method(space, order=order, channels_last=channels_last, **options)

    def batch_pair() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {k: (torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))) for k in ("train", "val")}

    class Loader(torch.utils.data.IterableDataset):
        def __iter__(self):  # noqa: ANN204
            for _ in range(warmup + steps):
                yield batch_pair()

    times: list[float] = []

    class Timer(pl.Callback):
        def on_train_batch_start(self, *args: object) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args: object) -> None:
            times.append(time.perf_counter() - self.start)

    trainer = pl.Trainer(
        max_epochs=1,
        precision="bf16-mixed" if precision == "bf16" else "32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Timer()],
        accelerator="cpu",
        devices=1,
    )
    loader = torch.utils.data.DataLoader(Loader(), batch_size=None)
    trainer.fit(model, train_dataloaders=loader)
    step = sorted(times[warmup:])[len(times[warmup:]) // 2]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step_s": step, "images_per_s": batch / step, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="images per half (train and val), default 64")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--configs", nargs="+", default=CONFIGS, choices=CHOICES)
    parser.add_argument("--baseline", default=BASELINE, choices=CHOICES, help="the configuration ratios are against")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.batch, args.steps, args.warmup, args.threads)))
        return
    print(f"DARTS search step, C=16, 8 cells, batch {args.batch}x3x32x32 per half, {args.threads} threads")
    width, ratio_width = max(22, *(len(config) + 2 for config in args.configs)), max(32, len(args.baseline) + 12)
    header = f"{'config':<{width}}{'step s':>9}{'images/s':>10}{'both halves':>13}{'peak MB':>10}"
    print(header + f"{'speed vs ' + args.baseline:>{ratio_width}}")
    baseline = None
    for config in args.configs:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            config,
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--threads",
            str(args.threads),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            print(f"{config:<{width}} failed:\n{out.stderr[-2000:]}")
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if config == args.baseline:
            baseline = result["images_per_s"]
        ratio = f"{result['images_per_s'] / baseline:.2f}x" if baseline else "-"
        both = 2 * result["images_per_s"]
        figures = f"{result['step_s']:>9.3f}{result['images_per_s']:>10.1f}{both:>13.1f}{result['peak_mb']:>10.0f}"
        print(f"{config:<{width}}{figures}{ratio:>{ratio_width}}", flush=True)


if __name__ == "__main__":
    main()
