"""Pictures are valid PNGs; cell diagrams use graphviz's `dot` when present and say clearly when it is missing."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from lightning_nas.callbacks import GenotypeLogger
from lightning_nas.callbacks.pictures import PNG_SIGNATURE, draw_cell, plot_probabilities, plot_subnets, read_png
from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods import DARTS
from lightning_nas.spaces.genotypes import DARTS_V2
from tests.tiny import quiet_trainer, tiny_darts_space


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_SIGNATURE and len(data) > 1000


def test_each_picture_is_a_png(tmp_path: Path) -> None:
    assert _is_png(draw_cell(DARTS_V2.graph("normal"), tmp_path / "cell.png", renderer="matplotlib", title="V2"))
    cells = ("normal", "reduce")
    probabilities = {f"{cell}/node2/edge{j}": {"skip": 0.2, "conv": 0.8} for cell in cells for j in (0, 1)}
    assert _is_png(plot_probabilities(probabilities, tmp_path / "heat.png"))
    results = [({"width": w}, {"val/acc": 0.5 + w / 100, "params": 1e3 * w, "flops": 1e6 * w}) for w in (2, 4, 8)]
    subnets = plot_subnets(results, tmp_path / "subnets.png")
    assert subnets is not None
    assert _is_png(subnets)
    assert read_png(subnets).shape[2] == 3
    assert plot_subnets([({"w": 1}, {"val/acc": 0.5})], tmp_path / "none.png") is None  # no params or FLOPs
    assert not (tmp_path / "none.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.png", "heat.png", "subnets.png"]  # no temp files


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="renderer must be 'auto', 'graphviz' or 'matplotlib', got 'svg'"):
        draw_cell(DARTS_V2.graph("normal"), tmp_path / "x.png", renderer="svg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cycle"):
        draw_cell([("a", "b", "x"), ("b", "a", "y")], tmp_path / "x.png", renderer="matplotlib")
    with pytest.raises(ValueError, match="cell must be 'normal' or 'reduce', got 'other'"):
        DARTS_V2.graph("other")


def _fit_tiny_darts(tmp_path: Path, genotype_logger: GenotypeLogger) -> None:
    model = DARTS(tiny_darts_space(), order="first")
    data = SyntheticDataModule(num_samples=32, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=16)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[genotype_logger])
    trainer.fit(model, datamodule=data)


def test_missing_dot_gives_a_clear_message_and_a_matplotlib_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(FileNotFoundError, match="need graphviz's `dot` program, which is not on PATH"):
        draw_cell(DARTS_V2.graph("normal"), tmp_path / "x.png", renderer="graphviz")
    with pytest.raises(FileNotFoundError, match="cell_renderer='graphviz'.*`dot` program"):
        _fit_tiny_darts(tmp_path / "strict", GenotypeLogger(cell_renderer="graphviz"))
    with pytest.warns(UserWarning, match="`dot` program is not on PATH, so GenotypeLogger draws cells with matplotlib"):
        _fit_tiny_darts(tmp_path / "auto", GenotypeLogger())
    assert _is_png(tmp_path / "auto" / "pictures" / "cell_normal_epoch000.png")


def test_dot_draws_the_cell_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in `dot` records its arguments and input, and writes a real PNG where it was told to."""
    png = draw_cell(DARTS_V2.graph("reduce"), tmp_path / "template.png", renderer="matplotlib")
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        f"open({str(tmp_path / 'input.dot')!r}, 'w').write(sys.stdin.read())\n"
        f"open({str(tmp_path / 'argv.txt')!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        f"shutil.copy({str(png)!r}, sys.argv[sys.argv.index('-o') + 1])\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    out = draw_cell(DARTS_V2.graph("normal"), tmp_path / "cell.png", title="normal", renderer="auto")
    assert _is_png(out)
    assert (tmp_path / "argv.txt").read_text().startswith("-Tpng -o ")
    source = (tmp_path / "input.dot").read_text()
    assert source.startswith("digraph cell {")
    for op, index in DARTS_V2.normal:
        source_node = ("c_{k-2}", "c_{k-1}")[index] if index < 2 else str(index - 2)
        assert f'"{source_node}" -> ' in source
        assert f'[label="{op}"]' in source
