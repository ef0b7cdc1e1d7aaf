"""Draw the DARTS V2 genotype's cells for the docs (docs/img/), with the package's own picture code.

Run from the repository root: ``python docs/scripts/draw_darts_v2.py`` (needs matplotlib, the ``plot`` extra).
"""

from __future__ import annotations

from pathlib import Path

from lightning_nas.callbacks.pictures import draw_cell
from lightning_nas.spaces.genotypes import DARTS_V2

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "img"
    for cell in ("normal", "reduce"):
        path = draw_cell(DARTS_V2.graph(cell), out / f"darts_v2_{cell}.png", title=f"DARTS V2, {cell} cell")
        print(path)
