"""The recorded one-shot runs behind docs/nb201-oneshot.md print the docs' table, and ``--report`` refuses to merge
runs of different protocols."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "nb201_oneshot.py"
RECORDED = ROOT / "benchmarks" / "results" / "nb201_oneshot_cpu.jsonl"
RECORDED_DEEPER = ROOT / "benchmarks" / "results" / "nb201_oneshot_cpu_n5.jsonl"  # --cells-per-stage 5
RECORDED_STEPS = ROOT / "benchmarks" / "results" / "nb201_oneshot_cpu_paper_steps.jsonl"  # the paper's data and steps
RECORDED_LOOP = ROOT / "benchmarks" / "results" / "nb201_oneshot_cpu_reference_loop.jsonl"  # --reference-loop
RECORDED_C16 = ROOT / "benchmarks" / "results" / "nb201_oneshot_cpu_gdas_c16.jsonl"  # GDAS, --channels 16
RECORDED_32PX = ROOT / "benchmarks" / "results" / "nb201_oneshot_cpu_gdas_32px.jsonl"  # GDAS, --image-size 32


@dataclass(frozen=True)
class _Finished:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def report(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., _Finished]:
    """``python benchmarks/nb201_oneshot.py --report PATHS`` run in this process (the script's import of torch and
    Lightning is what a subprocess would spend its time on): its exit code, standard output and error, with a
    ``SystemExit`` message on standard error and exit code 1, as the interpreter gives them."""

    def run(*paths: Path) -> _Finished:
        bench = _script(monkeypatch, SCRIPT)
        monkeypatch.setenv("LIGHTNING_NAS_DATA", str(data_root))
        monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--report", *map(str, paths)])
        capsys.readouterr()
        code: int | str | None = 0
        try:
            bench.main()
        except SystemExit as exit_:
            code = exit_.code
        out, err = capsys.readouterr()
        if isinstance(code, str):
            return _Finished(1, out, err + code + "\n")
        return _Finished(code or 0, out, err)

    return run


@pytest.mark.parametrize(
    "recorded",
    [RECORDED, RECORDED_DEEPER, RECORDED_STEPS, RECORDED_LOOP, RECORDED_C16, RECORDED_32PX],
    ids=["N=1", "N=5", "paper's steps", "reference loop", "GDAS C=16", "GDAS 32x32"],
)
def test_the_recorded_runs_print_the_docs_table(report: Callable[..., _Finished], recorded: Path) -> None:
    result = report(recorded)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and " ± " in line]
    methods = {json.loads(line)["method"] for line in recorded.read_text().splitlines()}
    assert {row.split(" | ")[0][2:] for row in rows} >= methods  # a row per recorded method
    docs = (ROOT / "docs" / "nb201-oneshot.md").read_text()
    missing = [row for row in rows if row not in docs]
    assert not missing, f"rows the recorded runs give but docs/nb201-oneshot.md does not have: {missing}"


def test_runs_of_another_protocol_are_named_not_merged(report: Callable[..., _Finished], tmp_path: Path) -> None:
    record = json.loads(RECORDED.read_text().splitlines()[0])
    record["protocol"] = record["protocol"] | {"cells_per_stage": 5}
    other = tmp_path / "deeper.jsonl"
    other.write_text(json.dumps(record) + "\n")
    result = report(RECORDED, other)
    assert result.returncode != 0
    assert f"{other} has a {record['method']} run (seed {record['seed']}) of another protocol" in result.stderr
    assert "cells_per_stage 5 against 1" in result.stderr


def _records(method: str) -> list[dict]:
    records = [json.loads(line) for line in RECORDED.read_text().splitlines()]
    return [record for record in records if record["method"] == method]


def test_each_method_keeps_its_own_epochs_when_runs_merge(report: Callable[..., _Finished], tmp_path: Path) -> None:
    """A GDAS run of 240 epochs merges with DARTS- runs of 50 (epochs are each method's own); a second GDAS run of
    175 epochs is refused, named, because one method's row would mix two schedules."""
    gdas, darts_minus = _records("GDAS")[0], _records("DARTS-")[0]
    gdas["protocol"] = gdas["protocol"] | {"epochs": 240, "epochs_override": {}}
    darts_minus["protocol"] = darts_minus["protocol"] | {"epochs": 50, "epochs_override": {}}
    merged = tmp_path / "merged.jsonl"
    merged.write_text(json.dumps(gdas) + "\n" + json.dumps(darts_minus) + "\n")
    result = report(merged)
    assert result.returncode == 0, result.stderr
    rows = {line.split(" | ")[0][2:] for line in result.stdout.splitlines() if " ± " in line}
    assert rows == {"GDAS", "DARTS-"}

    shorter = _records("GDAS")[1]  # the CPU protocol's: 70 epochs with GDAS's own 175
    other = tmp_path / "shorter.jsonl"
    other.write_text(json.dumps(shorter) + "\n")
    result = report(merged, other)
    assert result.returncode != 0
    assert f"{other} has a GDAS run (seed 1) of 175 epochs, {merged} one of 240" in result.stderr


def test_runs_of_the_reference_loop_are_their_own_protocol(report: Callable[..., _Finished], tmp_path: Path) -> None:
    """The recorded runs predate ``reference_loop``: they read as runs without it and merge with a new run that has
    it off; a run with it on (weights first, Nesterov) is another protocol, named."""
    old, new = _records("DARTS-V1")[0], _records("GDAS")[0]
    assert "reference_loop" not in old["protocol"]
    without = tmp_path / "without.jsonl"
    without.write_text(json.dumps(new | {"protocol": new["protocol"] | {"reference_loop": False}}) + "\n")
    result = report(RECORDED, without)
    assert result.returncode == 0, result.stderr
    with_loop = tmp_path / "with.jsonl"
    with_loop.write_text(json.dumps(new | {"protocol": new["protocol"] | {"reference_loop": True}}) + "\n")
    result = report(RECORDED, with_loop)
    assert result.returncode != 0
    assert "reference_loop True against False" in result.stderr


def _script(monkeypatch: pytest.MonkeyPatch, path: Path) -> ModuleType:
    """A benchmark is a script, not a module of the package: loaded under its own name (its dataclasses look their
    module up while being built); that name and the path it adds for its helpers are undone after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location(f"{path.stem}_bench", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("reference_loop", [False, True])
def test_the_reference_loop_reaches_darts_v1_and_gdas_only(
    monkeypatch: pytest.MonkeyPatch, reference_loop: bool
) -> None:
    """NAS-Bench-201's scripts ran DARTS-V1 and GDAS with the weights first and Nesterov momentum; the robust
    methods keep their own papers' loop (the alphas first, plain momentum) under either protocol setting."""
    bench = _script(monkeypatch, SCRIPT)
    built: dict[str, object] = {}
    monkeypatch.setattr(bench, "_fit", lambda module, *args: built.setdefault(type(module).__name__, module))
    protocol = bench.Protocol(
        channels=4, cells_per_stage=1, subset=None, epochs=1, arch_lr=3e-3, evaluations=1, population=1,
        tournament=1, held_batches=1, in_channels=1, reference_loop=reference_loop,
    )  # fmt: skip
    for name in ("DARTS-V1", "GDAS", "PC-DARTS", "DrNAS", "DARTS-"):
        built.clear()
        bench.METHODS[name](protocol, None, 0)
        (module,) = built.values()
        expected = reference_loop and name in ("DARTS-V1", "GDAS")
        assert module.weights_first is expected, name
        assert module.weight_nesterov is expected, name


@pytest.mark.parametrize(("flag", "cpu", "paper"), [(None, False, True), (True, True, True), (False, False, False)])
def test_the_paper_protocol_runs_the_reference_loop_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, flag: bool | None, cpu: bool, paper: bool
) -> None:
    bench = _script(monkeypatch, SCRIPT)
    args = argparse.Namespace(subset=None, epochs=None, arch_lr=None, accelerator="cpu", reference_loop=flag)
    assert (bench._protocol("cpu", args).reference_loop, bench._protocol("paper", args).reference_loop) == (cpu, paper)


def test_pooled_kendall_gains_match_their_closed_form(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _script(monkeypatch, ROOT / "benchmarks" / "learning_curves.py")
    final = np.arange(8.0)
    exact, reversed_ = final.copy(), final[::-1].copy()
    # recording A: the prediction is the final order (tau 1), the last epoch its reverse (tau -1): gain 2 at every k;
    # recording B: at k=2 the two swap (gain -2), at k=3 both are exact (gain 0)
    a = {2: (reversed_, exact, final), 3: (reversed_, exact, final)}
    b = {2: (exact, reversed_, final), 3: (exact, exact, final)}
    bench._pooled({"p": [a, b]}, ["A", "B"])
    rows = {line.split(" | ")[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("| p |")}
    assert rows["2"] == "| p | 2 | +2.000 / -2.000 | +0.000 (+0.000..+0.000) |"  # every resample keeps both signs
    # over k: A's mean 2, B's (-2 + 0) / 2 = -1, pooled 0.5; a resample of the runs keeps every tau (ties only
    # duplicate pairs), so the interval is the point
    assert rows["mean over 2, 3"] == "| p | mean over 2, 3 | +2.000 / -1.000 | +0.500 (+0.500..+0.500) |"


def test_an_image_size_that_does_not_divide_32_is_refused_named(data_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--image-size", "12", "--seeds", "1"],
        env=os.environ | {"LIGHTNING_NAS_DATA": str(data_root)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    assert "--image-size must divide 32 (32, 16, 8, 4, 2, 1), got 12" in result.stderr
