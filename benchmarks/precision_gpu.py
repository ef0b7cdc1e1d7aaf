"""Every tester case under ``16-mixed`` (fp16 autocast with Lightning's gradient scaler) on one CUDA GPU.

CPU autocast has no float16 gradient scaler, so CI checks ``bf16-mixed`` only (``tests/tester/test_precision.py``);
this script is the 16-mixed check for a machine with a GPU. For each case it trains ``--steps`` steps on the
tester's tiny space and data, asserts that every weight-step loss and every parameter is finite, and prints the
loss range, the gradient scaler's final scale and the final architecture. It exits non-zero if any case fails.

    python benchmarks/precision_gpu.py                   # every case in tests/tester/cases.py
    python benchmarks/precision_gpu.py --cases enas,ofa --steps 8
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_nas.methods.base import NASModule, export_payload  # noqa: E402
from tests.tester.cases import CASES, MethodCase  # noqa: E402


class RecordLosses(pl.Callback):
    """The logged training loss of every batch that stepped the weights."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self._step = 0

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step > self._step:
            self.losses.append(float(trainer.callback_metrics["train/loss"]))
        self._step = trainer.global_step


def run(case: MethodCase, steps: int, root: Path) -> bool:
    pl.seed_everything(0)
    module, record = case.build(), RecordLosses()
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        precision="16-mixed",
        max_steps=steps,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        default_root_dir=root,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[record],
    )
    trainer.fit(module, datamodule=case.data())
    assert isinstance(module, NASModule)
    finite = all(math.isfinite(loss) for loss in record.losses) and len(record.losses) == steps
    finite &= all(bool(torch.isfinite(p).all()) for p in module.parameters())
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    scale = f"{scaler.get_scale():g}" if scaler is not None else "none"
    losses = f"{min(record.losses):.4f} .. {max(record.losses):.4f}" if record.losses else "none"
    print(f"{case.name:<14} {'ok  ' if finite else 'FAIL'} losses {losses}, scale {scale}")
    print(f"{'':<14} final architecture: {export_payload(module.export())}")
    return finite


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(c.name for c in CASES), help="comma-separated case names")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--root", type=Path, default=Path("runs/precision_gpu"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("precision_gpu.py needs a CUDA GPU (16-mixed uses the CUDA gradient scaler)", file=sys.stderr)
        return 2
    by_name = {case.name: case for case in CASES}
    unknown = sorted(set(args.cases.split(",")) - set(by_name))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(by_name)}")
    results = [run(by_name[name], args.steps, args.root) for name in args.cases.split(",")]
    print(f"{sum(results)} of {len(results)} cases finite under 16-mixed on {torch.cuda.get_device_name()}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
