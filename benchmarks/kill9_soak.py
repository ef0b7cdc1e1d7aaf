"""Kill -9 soak: start a real ``lightning-nas fit`` many times, SIGKILL it at random moments, check nothing is lost.

Each round starts a fresh DARTS search on the digits (3 cells of 4 channels, 256 images: 4 steps an epoch, a
checkpoint every 2 steps plus ``last.ckpt``, the architecture history of
:class:`~lightning_nas.callbacks.GenotypeLogger`), and kills it with SIGKILL at a random moment; one round in
three waits for a checkpoint write to be in flight (its hidden temporary file in the checkpoints folder) and kills
it then. After every kill it checks that

* every file under a name a user reads is whole: each checkpoint loads with the safe loader, the history holds
  whole JSON lines, ``config.yaml`` and the final architecture parse (temporary files only under hidden names);
* the history's epochs are 0, 1, ... with none lost or repeated;
* resuming from the last checkpoint (``--ckpt_path``, or from scratch if the kill came before the first one) reaches
  the planned step, with the history holding every epoch exactly once (also after a kill that came after the last
  step's checkpoint but before that epoch's history line: the resume has no step left and must still end the epoch).

Run::

    OMP_NUM_THREADS=1 python benchmarks/kill9_soak.py --kills 20

It prints one line per kill (when it landed: the last saved step, the history's epochs, whether a checkpoint write
was in flight) and the count of kills survived; the exit status is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightning_nas._safe_io import load_checkpoint  # noqa: E402

STEPS_PER_EPOCH = 4  # 256 images, half for the weights, batches of 32


@dataclass
class Kill:
    """Where one SIGKILL landed and what the checks found."""

    round: int
    seconds: float
    targeted: bool
    write_in_flight: bool
    saved_step: int | None
    epochs: list[int]
    resumed_step: int | None = None
    problems: tuple[str, ...] = ()


def soak_config(workdir: Path, planned_steps: int) -> Path:
    """The digits DARTS recipe, made small and checkpointing every 2 steps."""
    config = yaml.safe_load((REPO / "configs/darts/digits.yaml").read_text())
    config["trainer"].update(
        max_steps=planned_steps,
        max_epochs=-1,
        limit_val_batches=1,
        enable_model_summary=False,
        logger={
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(workdir / "runs"), "name": "soak"},
        },
        callbacks=[
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"save_last": True, "every_n_train_steps": 2},
            }
        ],
    )
    config["model"]["init_args"]["space"]["init_args"].update(layers=3, channels=4)
    config["data"]["init_args"].update(subset=256, batch_size=32)
    path = workdir / "soak.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _start(config: Path, ckpt: Path | None) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "lightning_nas", "fit", "--config", str(config), "--genotype_logger.pictures=false"]
    if ckpt is not None:
        args.append(f"--ckpt_path={ckpt}")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _newest_run(workdir: Path, before: set[Path]) -> Path | None:
    runs = set((workdir / "runs" / "soak").glob("version_*")) - before
    return max(runs, key=lambda p: int(p.name.split("_")[1])) if runs else None


def _writing(folder: Path | None) -> bool:
    if folder is None or not folder.is_dir():
        return False
    return any(name.startswith(".") and name.endswith(".tmp") for name in os.listdir(folder))


def _kill(process: subprocess.Popen[bytes], workdir: Path, before: set[Path], delay: float, targeted: bool) -> bool:
    """SIGKILL ``process`` after ``delay`` seconds or, if ``targeted``, as soon as a checkpoint write is seen."""
    start = time.monotonic()
    while process.poll() is None:
        run = _newest_run(workdir, before)
        in_flight = _writing(run / "checkpoints" if run else None)
        if (targeted and in_flight) or (not targeted and time.monotonic() - start >= delay):
            process.send_signal(signal.SIGKILL)
            process.wait()
            return in_flight
        time.sleep(0.0005 if targeted else 0.005)
    return False


def check_run(run: Path | None) -> tuple[int | None, list[int], list[str]]:
    """The last saved step, the history's epochs and every problem found in a (killed or finished) run folder."""
    problems: list[str] = []
    if run is None:
        return None, [], problems
    steps = []
    for file in sorted((run / "checkpoints").glob("*.ckpt")):
        if file.name.startswith("."):
            continue  # a temporary file under a hidden name, never read
        try:
            steps.append((file.name == "last.ckpt", int(load_checkpoint(file)["global_step"])))
        except (OSError, ValueError, KeyError) as err:
            problems.append(f"{file.name} does not load: {err}")
    epochs = _history_epochs(run / "architecture_history.jsonl", problems)
    for name in ("config.yaml",):
        if (run / name).exists() and not isinstance(yaml.safe_load((run / name).read_text() or "null"), dict):
            problems.append(f"{name} is partial")
    for final in sorted(run.rglob("*.json")):
        if final.name.startswith("."):
            continue
        try:
            json.loads(final.read_text())
        except json.JSONDecodeError:
            problems.append(f"{final.name} is partial")
    last = [step for is_last, step in steps if is_last]
    return (last[0] if last else max((s for _, s in steps), default=None)), epochs, problems


def _history_epochs(path: Path, problems: list[str]) -> list[int]:
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        problems.append("the history ends in half a line")
    records: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            problems.append(f"the history holds a broken line {line[:40]!r}")
    epochs = [int(r["epoch"]) for r in records if r.get("event") == "epoch_end"]
    if epochs != list(range(len(epochs))):
        problems.append(f"the history's epochs are {epochs}: lost or repeated")
    return epochs


def soak(kills: int, planned_steps: int, workdir: Path, seed: int) -> list[Kill]:
    """Run ``kills`` rounds of start, SIGKILL, check, resume to ``planned_steps``, check."""
    rng = random.Random(seed)
    config = soak_config(workdir, planned_steps)
    planned_epochs = list(range(-(-planned_steps // STEPS_PER_EPOCH)))
    started = time.monotonic()
    reference = _start(config, None)  # one whole run: how long a fit takes, and what a finished one holds
    reference.wait()
    duration = time.monotonic() - started
    step, epochs, problems = check_run(_newest_run(workdir, set()))
    if reference.returncode != 0 or step != planned_steps or epochs != planned_epochs or problems:
        raise RuntimeError(f"the uninterrupted run failed: step {step}, epochs {epochs}, {problems}")
    results = []
    for index in range(kills):
        before = set((workdir / "runs" / "soak").glob("version_*"))
        targeted = index % 3 == 2
        delay = rng.uniform(0.15, 0.95) * duration
        process = _start(config, None)
        in_flight = _kill(process, workdir, before, delay, targeted)
        victim = _newest_run(workdir, before)
        saved, epochs, problems = check_run(victim)
        kill = Kill(index, round(delay, 1), targeted, in_flight, saved, epochs, problems=tuple(problems))
        kill.resumed_step, resumed_problems = _resume(config, workdir, victim, saved, planned_steps, planned_epochs)
        kill.problems += tuple(resumed_problems)
        results.append(kill)
        print(_describe(kill), flush=True)
    return results


def _resume(
    config: Path, workdir: Path, victim: Path | None, saved: int | None, planned: int, planned_epochs: list[int]
) -> tuple[int | None, list[str]]:
    last = victim / "checkpoints" / "last.ckpt" if victim is not None else None
    before = set((workdir / "runs" / "soak").glob("version_*"))
    process = _start(config, last if saved is not None and last is not None and last.exists() else None)
    _, err = process.communicate()
    step, epochs, problems = check_run(_newest_run(workdir, before))
    if saved == planned:
        # killed after its last step's checkpoint, maybe before that epoch's history line: the resume has no step
        # left (and saves no checkpoint) but must end that epoch, so its history holds every epoch
        step = saved
    if process.returncode != 0:
        problems.append(f"the resume failed: {err.decode()[-400:]}")
    if step != planned:
        problems.append(f"the resume stopped at step {step}, not {planned}")
    if epochs != planned_epochs:
        problems.append(f"the resumed history's epochs are {epochs}, not {planned_epochs}")
    return step, problems


def _describe(kill: Kill) -> str:
    moment = "write in flight" if kill.write_in_flight else "no write in flight"
    when = "at a checkpoint write" if kill.targeted else f"after {kill.seconds:.1f} s"
    saved = "before any checkpoint" if kill.saved_step is None else f"last saved step {kill.saved_step}"
    verdict = "survived" if not kill.problems else "FAILED: " + "; ".join(kill.problems)
    return (
        f"kill {kill.round + 1:2d} {when}: {saved}, history epochs {kill.epochs}, {moment}; "
        f"resumed to step {kill.resumed_step}: {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--planned_steps", type=int, default=12)
    parser.add_argument("--workdir", help="folder for the runs (default: a new temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args(argv)
    workdir = Path(ns.workdir) if ns.workdir else Path(tempfile.mkdtemp(prefix="kill9_soak_"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = soak(ns.kills, ns.planned_steps, workdir, ns.seed)
    survived = sum(not kill.problems for kill in results)
    in_flight = sum(kill.write_in_flight for kill in results)
    print(f"{survived} of {len(results)} kills survived ({in_flight} during a checkpoint write); runs in {workdir}")
    return 0 if survived == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
