"""Speed of the elastic MobileNetV3 supernet against the static subnets it exports, and of BN recalibration.

For the largest and the smallest subnet: the median time of one training-mode forward + backward pass of the
supernet with that subnet active, and of the exported static subnet (plain ``nn.Conv2d`` / ``nn.BatchNorm2d``)
on the same batch; the two are timed alternately so that machine noise hits both alike. The ratio supernet /
static is the cost of weight sharing; the once-for-all reference runs its elastic supernet at about the speed of
the extracted subnet (ratio about 1.0).

Why the ratio stays near 1: the active channels are leading slices (``weight[:c]``, ``weight[:, :c]``,
``running_mean[:c]``), which are views passed straight to ``F.conv2d`` / ``F.batch_norm`` -- no weight or
activation is copied in the forward pass, and at full width the parameters themselves are passed. A smaller
depthwise kernel costs one small matrix product on the weights (``k^2 x k^2`` per layer); skipped blocks are
not run at all. Last, the time to recalibrate the BN statistics of one subnet on 2,000 images (batches of 200).

    python benchmarks/ofa_supernet.py                # ImageNet preset at 224, batch 32
    python benchmarks/ofa_supernet.py --quick        # CIFAR preset at 32, narrow widths, batch 8, 200 images
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from lightning_nas.calibration import recalibrate_batchnorm
from lightning_nas.spaces import ElasticMobileNetV3


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def compare(
    space: ElasticMobileNetV3, arch: dict[str, int | str], batch: int, steps: int, channels_last: bool
) -> tuple[float, float]:
    """Median forward+backward seconds of the supernet running ``arch`` and of its exported static subnet."""
    space.train().activate(arch)
    static = space.export_subnet(arch).train()
    if channels_last:
        static.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    resolution = int(arch["resolution"])
    x = torch.randn(batch, space.in_channels, resolution, resolution)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.num_classes, (batch,))
    elastic_times, static_times = [], []
    for step in range(steps + 1):  # the first of each is a warm-up
        elastic_time, static_time = _step(space, x, y), _step(static, x, y)
        if step:
            elastic_times.append(elastic_time)
            static_times.append(static_time)
    return statistics.median(elastic_times), statistics.median(static_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small space and batch, to check the script runs")
    parser.add_argument("--batch", type=int, help="images per step (default 32; 8 with --quick)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model (median reported)")
    parser.add_argument("--calibration-images", type=int, help="images for BN recalibration (2000; 200 with --quick)")
    parser.add_argument("--channels-last", action="store_true", help="run both models in channels-last format")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.quick:
        space = ElasticMobileNetV3(num_classes=10, preset="cifar", widths=(8, 8, 8, 16, 16, 24, 24, 48, 64))
    else:
        space = ElasticMobileNetV3(num_classes=1000)
    if args.channels_last:
        space.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    batch = args.batch or (8 if args.quick else 32)
    images = args.calibration_images or (200 if args.quick else 2000)
    label = f"{'quick, ' if args.quick else ''}{space.preset} preset"
    print(f"OFA supernet ({label}), batch {batch}, {args.threads} threads")
    print(f"{'subnet':<8}{'res':>5}{'params':>12}{'MACs':>15}{'supernet ms':>14}{'static ms':>12}{'ratio':>8}")
    for name, arch in (("largest", space.sample_max_subnet()), ("smallest", space.sample_min_subnet())):
        elastic, static = compare(space, arch, batch, args.steps, args.channels_last)
        figures = f"{space.count_params(arch):>12,}{space.count_flops(arch):>15,}"
        times = f"{elastic * 1e3:>14.1f}{static * 1e3:>12.1f}{elastic / static:>7.2f}x"
        print(f"{name:<8}{arch['resolution']:>5}{figures}{times}")
    arch = space.sample_max_subnet()
    space.activate(arch)
    resolution = int(arch["resolution"])
    batches = list(torch.randn(images, space.in_channels, resolution, resolution).split(200))
    start = time.perf_counter()
    recalibrate_batchnorm(space, batches)
    print(f"BN recalibration of the largest subnet on {images} images: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
