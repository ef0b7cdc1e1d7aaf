"""Run tester cases under DDP on 2 CPU processes (gloo); after every training batch, gather and compare on all ranks.

Used by ``test_ddp.py``::

    python tests/tester/ddp_run.py OUT_DIR CASE [CASE ...]

Started without ``LOCAL_RANK`` it launches itself twice (ranks 0 and 1, as ``torchrun`` would) and waits; each rank
then runs every named case in turn in one process group, so the start-up cost is paid once. After each training
batch every rank gathers every rank's parameters (weights, architecture parameters, controller), its search state
and the architectures it sampled in that batch, and records any difference; at the end it compares the final
architecture. Each rank writes ``OUT_DIR/<case>.rank<r>.pt``.

A case named ``resume:<case>`` instead stops a DDP run mid-epoch and resumes it from its checkpoint, and records
where its final weights and search state differ from an uninterrupted DDP run's (``OUT_DIR/resume-<case>.rank<r>.pt``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from typing_extensions import override  # noqa: E402

from lightning_nas.arch import Arch  # noqa: E402
from lightning_nas.data import SyntheticDataModule  # noqa: E402
from lightning_nas.methods import ENAS, SPOS  # noqa: E402
from lightning_nas.methods.base import NASModule, export_payload  # noqa: E402
from tests.tester.cases import CASES, MethodCase, tiny_enas  # noqa: E402
from tests.tiny import bilevel_data, tiny_darts_space  # noqa: E402

WORLD_SIZE = 2
MAX_STEPS = 3  # ENAS: weight, weight, controller, weight batches; CARS evolves and OFA changes phase every step


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two nested structures of tensors, mappings, sequences and plain values differ (exactly)."""
    if isinstance(a, torch.Tensor):
        same = isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
        return [] if same else [path]
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return [f"{path} (keys)"]
        return [d for key in a for d in differences(a[key], b[key], f"{path}/{key}")]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return [f"{path} (length)"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}/{i}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def snapshot(case: MethodCase, module: NASModule) -> dict[str, Any]:
    """What must agree on every rank after a step (running BN statistics are per rank by design)."""
    return {
        "parameters": {name: p.detach().clone() for name, p in module.named_parameters()},
        "search_state": case.search_state(module),
        "sampled": module.sampled_archs(),
        "scored": getattr(module, "last_children", None),  # ENAS: the children a controller step scored
    }


class GatherAndCompare(pl.Callback):
    """After every training batch, gather every rank's snapshot and record where any rank differs from rank 0."""

    def __init__(self, case: MethodCase) -> None:
        self.case = case
        self.batches = 0
        self.mismatches: list[str] = []
        self.first: dict[str, torch.Tensor] = {}
        self.last: dict[str, torch.Tensor] = {}
        self.sampled: list[Any] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        assert isinstance(pl_module, NASModule)
        mine = snapshot(self.case, pl_module)
        gathered: list[Any] = [None] * trainer.world_size
        dist.all_gather_object(gathered, mine)
        for rank, other in enumerate(gathered[1:], start=1):
            found = differences(gathered[0], other)
            self.mismatches += [f"batch {self.batches} (step {trainer.global_step}), rank {rank}: {d}" for d in found]
        self.first = self.first or mine["parameters"]
        self.last = mine["parameters"]
        self.sampled.append(mine["sampled"])
        self.batches += 1


class RankSeededSPOS(SPOS):
    """A broken SPOS whose path depends on the rank: the comparison must catch it (see ``test_ddp.py``)."""

    @override
    def sample_path(self, step: int, stream: str = "spos") -> Arch:
        return super().sample_path(step, f"{stream}/rank{self.global_rank}")


BROKEN = MethodCase("broken-spos-rank-seeded", lambda: RankSeededSPOS(tiny_darts_space(), lr=0.05), bilevel_data)


class RewardRecordingENAS(ENAS):
    """The tester's ENAS, keeping every reward vector before and after the cross-rank average."""

    def __init__(self) -> None:
        base = tiny_enas()
        super().__init__(base.space, **{k: v for k, v in base.hparams.items() if k != "space"})
        self.rewards: list[tuple[torch.Tensor, torch.Tensor]] = []

    @override
    def _reduce(self, values: torch.Tensor) -> torch.Tensor:
        local = values.detach().clone()  # all-reduce may work in place
        averaged = super()._reduce(values)
        self.rewards.append((local, averaged.detach().clone()))
        return averaged


ENAS_REWARDS = MethodCase("enas-rewards", RewardRecordingENAS, bilevel_data)


def run_case(case: MethodCase, out: Path) -> None:
    pl.seed_everything(0)
    module = case.build()
    assert isinstance(module, NASModule)
    recorder = GatherAndCompare(case)
    trainer = pl.Trainer(
        strategy="ddp_find_unused_parameters_true",
        accelerator="cpu",
        devices=WORLD_SIZE,
        default_root_dir=out / case.name,  # CARS writes its Pareto front there
        max_steps=MAX_STEPS,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    trainer.fit(module, datamodule=case.data())
    final = export_payload(module.export())
    finals: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(finals, final)
    different = [f"final architecture, rank {r}: {f}" for r, f in enumerate(finals) if f != final]
    mismatches = recorder.mismatches + different
    changed = sorted(n for n in recorder.first if not torch.equal(recorder.first[n], recorder.last[n]))
    report = {
        "batches": recorder.batches,
        "steps": trainer.global_step,
        "mismatches": mismatches,
        "final": final,
        "changed": changed,
        "sampled": recorder.sampled,
        "rewards": module.rewards if isinstance(module, RewardRecordingENAS) else [],
    }
    torch.save(report, out / f"{case.name}.rank{trainer.global_rank}.pt")


class _Crash(Exception):
    pass


class CrashAt(pl.Callback):
    """Kill the run as the step after ``step`` starts (Lightning runs checkpoint callbacks last in a hook)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            raise _Crash


RESUME_PREFIX = "resume:"
RESUME_STEPS, RESUME_STOP = 7, 4  # 3 batches per rank and epoch: the checkpoint falls inside the second epoch


def _resume_data() -> SyntheticDataModule:
    # twice the tester's data, so that each rank's half of a search half still makes 3 batches of 16 per epoch
    return SyntheticDataModule(
        num_samples=192, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=16, flip=True
    )


def _resume_fit(case: MethodCase, root: Path, max_steps: int, ckpt_path: str | None, **kwargs: Any) -> NASModule:
    pl.seed_everything(0)
    module = case.build()
    assert isinstance(module, NASModule)
    trainer = pl.Trainer(
        strategy="ddp_find_unused_parameters_true",
        accelerator="cpu",
        devices=WORLD_SIZE,
        default_root_dir=root,
        max_steps=max_steps,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        **kwargs,
    )
    trainer.fit(module, datamodule=_resume_data(), ckpt_path=ckpt_path)
    return module


def run_resume(case: MethodCase, out: Path) -> None:
    """Stop a DDP run mid-epoch and resume it: every rank must end where an uninterrupted DDP run ends."""
    root = out / f"resume-{case.name}"
    full = _resume_fit(case, root / "full", RESUME_STEPS, None, enable_checkpointing=False)
    checkpoint = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=RESUME_STOP, save_top_k=-1)
    try:  # killed as the step after RESUME_STOP starts, on both ranks: the checkpoint is the mid-epoch one
        _resume_fit(case, root / "first", RESUME_STEPS, None, callbacks=[checkpoint, CrashAt(RESUME_STOP)])
    except _Crash:
        pass
    else:
        raise AssertionError("the first run was to be killed")
    [saved] = sorted((root / "ckpt").glob(f"*step={RESUME_STOP}.ckpt"))
    resumed = _resume_fit(case, root / "second", RESUME_STEPS, str(saved), enable_checkpointing=False)
    rank = dist.get_rank()
    # A checkpoint holds rank 0's buffers, so the other ranks resume with rank 0's BatchNorm running statistics
    # (per rank by design, and broadcast by DDP only in forwards it wraps): compare those on rank 0 only.
    per_rank = ("running_mean", "running_var", "num_batches_tracked")
    states = [
        {k: v for k, v in m.state_dict().items() if rank == 0 or not k.endswith(per_rank)} for m in (full, resumed)
    ]
    mismatches = differences(*states)
    mismatches += differences(case.search_state(full), case.search_state(resumed), "search_state")
    torch.save({"mismatches": mismatches}, out / f"{RESUME_PREFIX.rstrip(':')}-{case.name}.rank{rank}.pt")


def launch(args: list[str]) -> int:
    """Start the ranks as ``torchrun`` would, wait for them, and return the worst exit code."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, *args],
            env={
                **os.environ,
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "WORLD_SIZE": str(WORLD_SIZE),
                "NODE_RANK": "0",
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
            },
        )
        for rank in range(WORLD_SIZE)
    ]
    return max(process.wait() for process in processes)


def main() -> int:
    out, names = Path(sys.argv[1]), sys.argv[2:]
    if "LOCAL_RANK" not in os.environ:
        return launch(sys.argv[1:])
    by_name = {case.name: case for case in [*CASES, BROKEN, ENAS_REWARDS]}
    unknown = sorted({name.removeprefix(RESUME_PREFIX) for name in names} - set(by_name))
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; known: {sorted(by_name)} (prefix {RESUME_PREFIX!r} to resume)")
    for name in names:
        if name.startswith(RESUME_PREFIX):
            run_resume(by_name[name.removeprefix(RESUME_PREFIX)], out)
        else:
            run_case(by_name[name], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
