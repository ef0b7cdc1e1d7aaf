"""Files a user is handed never run code: a planted payload in each kind of file, given to every entry point that
reads that kind (issue 19).

Every payload, if it ran, would create the marker path; each test first shows the payload is live (the unsafe
loader does run it), then that no command or API of the package does.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from lightning_nas._safe_io import UnsafeFileError, load_checkpoint, load_plain_pickle
from lightning_nas.arch import load_arch
from lightning_nas.callbacks import AtomicCheckpointIO
from lightning_nas.cli import main, read_checkpoint_result
from lightning_nas.data import read_cifar
from lightning_nas.methods import DARTS
from lightning_nas.search import LatencyTable
from lightning_nas.subnet_export import load_elastic_checkpoint
from tests.test_cli import REPO, _search_args
from tests.tiny import bilevel_data, quiet_trainer, tiny_darts_space


class _Payload:
    """Pickles as a call of ``os.makedirs(marker)``: whoever unpickles it with a permissive loader creates it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.makedirs, (str(self.marker),))


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A real one-step DARTS checkpoint, and a copy with a payload entry: ``(good, evil, marker)``."""
    root = tmp_path_factory.mktemp("planted")
    main(_search_args(root, "--trainer.max_steps=1", "--trainer.limit_val_batches=1"))
    good = root / "darts_digits" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(good, map_location="cpu", weights_only=True)
    marker = root / "PAYLOAD_RAN"
    checkpoint["notes"] = _Payload(marker)
    evil = root / "evil.ckpt"
    torch.save(checkpoint, evil)
    return good, evil, marker


def test_the_planted_checkpoint_is_live(planted: tuple[Path, Path, Path]) -> None:
    _, evil, marker = planted
    torch.load(evil, map_location="cpu", weights_only=False)  # what the search loader used to do
    assert marker.is_dir()
    marker.rmdir()


def _commands(evil: Path, tmp: Path) -> dict[str, list[str]]:
    fit = _search_args(tmp, f"--ckpt_path={evil}")
    return {
        "fit": fit,
        "validate": ["validate", *fit[1:]],
        "test": ["test", *fit[1:]],
        "export": ["export", "--ckpt_path", str(evil), "--output", str(tmp / "arch.json")],
        "export-subnet": ["export", "--ckpt_path", str(evil), "--subnet", "max", "--no_recalibrate"],
        "search": [
            "search",
            "--config",
            str(REPO / "configs/darts/digits.yaml"),
            "--ckpt_path",
            str(evil),
            "--model.space.init_args.layers=3",
            "--model.space.init_args.channels=4",
            "--num_evaluations",
            "1",
            "--output_dir",
            str(tmp / "search"),
        ],
    }


@pytest.mark.parametrize("command", ["fit", "validate", "test", "export", "export-subnet", "search"])
def test_every_command_refuses_the_planted_checkpoint(
    command: str, planted: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, evil, marker = planted
    with pytest.raises(SystemExit) as exit_info:
        main(_commands(evil, tmp_path)[command])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert not marker.exists(), f"{command} ran the payload"
    assert str(evil) in err, err[-2000:]
    assert "refused" in err
    assert not (tmp_path / "search").exists()
    assert not (tmp_path / "arch.json").exists()


def test_python_apis_refuse_the_planted_checkpoint(planted: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, evil, marker = planted
    for load in (
        load_checkpoint,
        read_checkpoint_result,
        load_elastic_checkpoint,
        AtomicCheckpointIO().load_checkpoint,
    ):
        with pytest.raises(UnsafeFileError, match=str(evil)):
            load(evil)
    # a resumed fit (what --ckpt_path and --ckpt_path last do inside the Trainer)
    trainer = quiet_trainer(tmp_path, max_steps=2, plugins=[AtomicCheckpointIO()])
    with pytest.raises(UnsafeFileError, match=str(evil)):
        trainer.fit(DARTS(tiny_darts_space(), order="first"), datamodule=bilevel_data(), ckpt_path=evil)
    with pytest.raises(pickle.UnpicklingError):  # Lightning's own classmethod, torch's weights_only default
        DARTS.load_from_checkpoint(evil)
    assert not marker.exists()


def _planted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker: Path) -> str:
    """A module on sys.path that creates ``marker`` when imported (a name a checkpoint could point at)."""
    name = f"planted_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(f"import os\nos.makedirs({str(marker)!r})\nclass Space: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_class_names_in_a_checkpoint_import_nothing_new(
    planted: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    good, _, _ = planted
    marker = tmp_path / "IMPORTED"
    module = _planted_module(tmp_path, monkeypatch, marker)
    checkpoint = torch.load(good, map_location="cpu", weights_only=True)
    checkpoint["lightning_nas"].update(space_class=f"{module}.Space", space_config={})
    checkpoint["hyper_parameters"]["_class_path"] = f"{module}.Space"
    named = tmp_path / "names_a_module.ckpt"
    torch.save(checkpoint, named)
    with pytest.raises(UnsafeFileError, match=f"{module}.Space"):
        load_elastic_checkpoint(named)
    with pytest.raises(SystemExit):
        main(_search_args(tmp_path, f"--ckpt_path={named}"))
    assert str(named) in capsys.readouterr().err
    assert not marker.exists()
    assert module not in sys.modules


def test_cifar_batches_hold_plain_values_only(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rows = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": rows, b"labels": [3, 7]}))
    images, labels = read_cifar(tmp_path, "cifar10", train=False)
    assert labels.tolist() == [3, 7]
    assert torch.equal(images.reshape(2, -1), torch.from_numpy(rows))

    marker = tmp_path / "PAYLOAD_RAN"
    planted = pickle.dumps({b"data": rows, b"labels": [3, 7], b"batch_label": _Payload(marker)})
    pickle.loads(planted)  # live
    assert marker.is_dir()
    marker.rmdir()
    (folder / "test_batch").write_bytes(planted)
    with pytest.raises(UnsafeFileError, match=r"test_batch.*names posix\.makedirs|test_batch.*makedirs"):
        read_cifar(tmp_path, "cifar10", train=False)
    with pytest.raises(UnsafeFileError):
        load_plain_pickle(folder / "test_batch")
    assert not marker.exists()


def test_json_files_with_a_pickle_inside_are_refused(tmp_path: Path) -> None:
    """Architectures and latency tables are JSON: a pickled payload is not JSON, and nothing unpickles it."""
    marker = tmp_path / "PAYLOAD_RAN"
    planted = tmp_path / "planted.json"
    planted.write_bytes(pickle.dumps(_Payload(marker)))
    for load in (load_arch, LatencyTable.load):
        with pytest.raises(ValueError, match=str(planted)):
            load(planted)
    assert not marker.exists()


def test_configs_with_python_tags_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "PAYLOAD_RAN"
    text = (REPO / "configs/darts/digits.yaml").read_text()
    text = text.replace("seed_everything: 0", f"seed_everything: !!python/object/apply:os.makedirs [{str(marker)!r}]")
    yaml.unsafe_load(text)  # live
    assert marker.is_dir()
    marker.rmdir()
    config = tmp_path / "planted.yaml"
    config.write_text(text)
    for command in (["fit", "--config", str(config)], ["lut", "--config", str(config), "--output", "t.json"]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        assert exit_info.value.code == 2
    assert not marker.exists()


def test_a_planted_multi_trial_state_is_refused_on_resume(tmp_path: Path) -> None:
    """``run_trials(resume=True)`` / ``lightning-nas trials --resume`` read the experiment's driver state: a planted
    entry there is refused, naming the file, before anything of the experiment runs."""
    from lightning_nas.trials.runner import EXPERIMENT_FILE, STATE_FILE, _prepare_directory

    marker = tmp_path / "PAYLOAD_RAN"
    signature = {"strategy": "RandomSearch", "num_trials": 3}
    (tmp_path / EXPERIMENT_FILE).write_text(json.dumps(signature))
    torch.save({"finished": [], "notes": _Payload(marker)}, tmp_path / STATE_FILE)
    torch.load(tmp_path / STATE_FILE, weights_only=False)  # live
    assert marker.is_dir()
    marker.rmdir()
    with pytest.raises(UnsafeFileError, match=STATE_FILE):
        _prepare_directory(tmp_path, signature, resume=True)
    assert not marker.exists()
