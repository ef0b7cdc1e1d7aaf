"""Time and peak memory of one BigNAS sandwich step against its subnets trained separately.

A sandwich step trains the largest subnet, the smallest and ``N`` random ones on one batch and takes one optimizer
step on the summed gradients (``BigNAS.sandwich_backward``). It is compared with the same subnets trained one step
each (zero_grad, forward, backward, optimizer step; the students distil from the same detached teacher logits):
the sandwich does the same forward and backward work and saves ``N + 1`` optimizer steps, so the ratio should stay
at or below 1.0 (aim: at most 1.1). The two are timed alternately in one process so that machine noise hits both
alike; medians are reported.

Peak memory: the peak resident set of a fresh process running sandwich steps, against one running steps of the
largest subnet alone; both also as the growth over the process's resident set just before the first step. The
sandwich keeps one subnet's activations at a time (each backward frees its graph) plus the teacher's logits, so
its peak should be close to the largest subnet's. The memory processes run with ``MALLOC_MMAP_THRESHOLD_=65536``
so that glibc returns freed activation buffers at once; with its default heap, buffers of the subnets' different
shapes fragment it and the sandwich's peak resident set reads about 20% higher than its live memory.

    python benchmarks/bignas_step.py                 # CIFAR preset at 32x32, MobileNetV3 widths, batch 32, N=2
    python benchmarks/bignas_step.py --quick         # narrow widths, batch 8: checks that the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _build(quick: bool, batch: int, num_random: int) -> tuple[Any, Any, Any, Any]:
    import torch

    from lightning_nas.methods import BigNAS
    from lightning_nas.spaces import ElasticMobileNetV3

    torch.manual_seed(0)
    widths = (8, 8, 8, 16, 16, 24, 24, 48, 64) if quick else None
    space = ElasticMobileNetV3(num_classes=10, preset="cifar", widths=widths)
    model = BigNAS(space, num_random_subnets=num_random, calibration_images=0, channels_last=True)
    optimizer = model.configure_optimizers()
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    return model, optimizer, x, y


def _sandwich_step(model: Any, optimizer: Any, x: Any, y: Any, step: int) -> None:
    optimizer.zero_grad(set_to_none=True)
    model.sandwich_backward(x, y, model.sandwich_subnets(step), step)
    optimizer.step()


def _separate_steps(model: Any, optimizer: Any, x: Any, y: Any, step: int) -> float:
    """Seconds of the sandwich's subnets trained one optimizer step each (the teacher's logits are kept)."""
    total, teacher = 0.0, None
    for role, arch in model.sandwich_subnets(step):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, logits = model.subnet_loss(x, y, arch, role, teacher, step)
        loss.backward()
        optimizer.step()
        total += time.perf_counter() - start
        if role == "max":
            teacher = logits.detach()
    return total


def run_time(quick: bool, batch: int, num_random: int, steps: int) -> dict[str, float]:
    model, optimizer, x, y = _build(quick, batch, num_random)
    sandwich, separate = [], []
    for step in range(steps + 1):  # the first of each is a warm-up
        start = time.perf_counter()
        _sandwich_step(model, optimizer, x, y, step)
        elapsed = time.perf_counter() - start
        alone = _separate_steps(model, optimizer, x, y, step)
        if step:
            sandwich.append(elapsed)
            separate.append(alone)
    return {"sandwich_s": statistics.median(sandwich), "separate_s": statistics.median(separate)}


def run_memory(mode: str, quick: bool, batch: int, num_random: int, steps: int) -> dict[str, float]:
    model, optimizer, x, y = _build(quick, batch, num_random)
    before = _rss_mb()
    for step in range(steps):
        if mode == "sandwich":
            _sandwich_step(model, optimizer, x, y, step)
        else:  # one step of the largest subnet alone
            optimizer.zero_grad(set_to_none=True)
            loss, _ = model.subnet_loss(x, y, model.space.sample_max_subnet(), "max", None, step)
            loss.backward()
            optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mb": peak, "growth_mb": peak - before}


def _child(args: argparse.Namespace, what: str) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--one", what, "--batch", str(args.batch), "--steps", str(args.steps)]
    cmd += ["--num-random", str(args.num_random)] + (["--quick"] if args.quick else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if what != "time":  # large buffers via mmap, returned on free: the peak is live memory, not heap fragmentation
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="narrow widths and batch 8, to check the script runs")
    parser.add_argument("--batch", type=int, help="images per step (default 32; 8 with --quick)")
    parser.add_argument("--num-random", type=int, default=2, help="random subnets per step (N, default 2)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch = args.batch or (8 if args.quick else 32)
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        if args.one == "time":
            result = run_time(args.quick, args.batch, args.num_random, args.steps)
        else:
            result = run_memory(args.one, args.quick, args.batch, args.num_random, args.steps)
        print(json.dumps(result))
        return
    widths = "narrow widths" if args.quick else "MobileNetV3-Large widths"
    print(
        f"BigNAS sandwich step: elastic MobileNetV3 (CIFAR preset, {widths}), batch {args.batch}x3x32x32, "
        f"largest + smallest + {args.num_random} random subnets, {args.threads} threads, median of {args.steps}"
    )
    times = _child(args, "time")
    ratio = times["sandwich_s"] / times["separate_s"]
    print(f"{'':<34}{'seconds':>10}{'ratio':>8}")
    print(f"{'sandwich step':<34}{times['sandwich_s']:>10.3f}{ratio:>7.2f}x")
    print(f"{'same subnets, one step each (sum)':<34}{times['separate_s']:>10.3f}{1.0:>7.2f}x")
    largest, sandwich = _child(args, "largest"), _child(args, "sandwich")
    print(f"\n{'peak memory (fresh process)':<34}{'peak MB':>10}{'growth MB':>11}{'ratio':>8}")
    for name, result in (("largest subnet step", largest), ("sandwich step", sandwich)):
        growth_ratio = result["growth_mb"] / max(largest["growth_mb"], 1e-9)
        print(f"{name:<34}{result['peak_mb']:>10.0f}{result['growth_mb']:>11.0f}{growth_ratio:>7.2f}x")


if __name__ == "__main__":
    main()
