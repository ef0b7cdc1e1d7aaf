"""Labels and batch kinds are checked before training starts, with one line naming the value and the fix (issue 19)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightning_nas.cli import main
from lightning_nas.data import MNISTDataModule, SyntheticDataModule
from lightning_nas.methods import DARTS, Retrain
from lightning_nas.methods.base import check_batches
from tests.data.test_readers import _write_idx
from tests.test_cli import _QUICK, REPO
from tests.tester.cases import CASES
from tests.tiny import quiet_trainer, tiny_darts_space


def _mnist_folder(root: Path, train_labels: np.ndarray) -> Path:
    """A tiny MNIST-format folder: 8 training and 4 test images of 28x28, with the given training labels."""
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for prefix, count in (("train", 8), ("t10k", 4)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.zeros((count, 28, 28), dtype=np.uint8))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", train_labels)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(4, dtype=np.uint8))
    return folder


def test_a_label_outside_the_classes_is_named_before_training(tmp_path: Path) -> None:
    labels = np.array([0, 1, 2, 3, 200, 5, 6, 7], dtype=np.uint8)
    folder = _mnist_folder(tmp_path, labels)
    data = MNISTDataModule(root=str(tmp_path), batch_size=4)
    model = Retrain(arch="DARTS_V2", in_channels=1, num_classes=10, channels=4, layers=2, auxiliary=False)
    trainer = quiet_trainer(max_steps=1)
    with pytest.raises(ValueError, match=r"label 200 at position 4 is outside the valid range 0\.\.9") as info:
        trainer.fit(model, datamodule=data)
    assert str(folder / "train-labels-idx1-ubyte.gz") in str(info.value)
    assert trainer.global_step == 0


def test_labels_must_be_one_integer_per_image(tmp_path: Path) -> None:
    folder = _mnist_folder(tmp_path, np.zeros((8, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"shape \(8, 2\); expected one integer label per image, shape \(8,\)"):
        MNISTDataModule(root=str(tmp_path)).setup("fit")
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(8, dtype=np.float32))
    with pytest.raises(ValueError, match=r"torch.float32 labels"):
        MNISTDataModule(root=str(tmp_path)).setup("fit")


@pytest.mark.parametrize(
    ("search", "kind", "fix"),
    [(True, "bilevel", "--data.search=false"), (False, "plain", "--data.search=true")],
)
def test_every_method_states_its_batches(search: bool, kind: str, fix: str) -> None:
    """A method is refused exactly when its BATCHES names the other kind of batches."""
    declared = set()
    for case in CASES:
        model = case.build()
        declared.add(model.BATCHES)
        if model.BATCHES in ("either", kind):
            check_batches(model, bilevel=search)
        else:
            with pytest.raises(TypeError, match=f"{type(model).__name__} trains on .*{fix}"):
                check_batches(model, bilevel=search)
    assert declared == {"bilevel", "plain", "either"}


def test_the_setup_refuses_the_wrong_batches(tmp_path: Path) -> None:
    trainer = quiet_trainer(max_steps=1)
    data = SyntheticDataModule(num_samples=32, num_classes=4, in_channels=1, image_size=8, batch_size=16)
    with pytest.raises(TypeError, match=r"^DARTS trains on bilevel .*\(--data.search=true\)$"):
        trainer.fit(DARTS(tiny_darts_space(), order="first"), datamodule=data)
    assert trainer.global_step == 0


@pytest.mark.parametrize(
    ("config", "flag", "expected"),
    [
        ("retrain/digits.yaml", "--data.search=true", "Retrain trains on plain (images, labels) batches"),
        ("darts/digits.yaml", "--data.search=false", "DARTS trains on bilevel"),
    ],
)
def test_the_cli_names_the_flag_to_change(
    config: str, flag: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["fit", "--config", str(REPO / "configs" / config), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, flag, *_QUICK])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err
    fix = "--data.search=false" if flag.endswith("true") else "--data.search=true"
    assert err.strip().endswith(f"({fix})")
    assert not list(tmp_path.rglob("*.ckpt"))
