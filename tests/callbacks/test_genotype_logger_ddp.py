"""Under DDP the architecture callbacks do not deadlock (the run directory is a collective) and only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lightning_nas.arch import Genotype
from lightning_nas.callbacks.pictures import PNG_SIGNATURE

SCRIPT = Path(__file__).with_name("ddp_genotype_run.py")


def test_two_ranks_write_one_history(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["version_0"]
    run = tmp_path / "run" / "version_0"
    records = [json.loads(line) for line in (run / "architecture_history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]  # one line per epoch, not one per rank
    found = Genotype.parse((tmp_path / "genotype.txt").read_text())
    assert Genotype.from_json(records[-1]["result"]) == found
    assert Genotype.from_json((run / "checkpoints" / "final_architecture.json").read_text()) == found
    assert sorted(p.name for p in (run / "pictures").iterdir()) == [
        f"{kind}_epoch{epoch:03d}.png" for kind in ("cell_normal", "cell_reduce", "probabilities") for epoch in (0, 1)
    ]
    assert all(p.read_bytes()[:8] == PNG_SIGNATURE for p in (run / "pictures").iterdir())
