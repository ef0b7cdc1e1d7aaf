"""W&B, offline and without an account: the run directory holds the architecture table, the pictures and the
artifacts; a missing package or login is a clear error before any run starts (issue 7)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import pytest
import wandb
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_nas.arch import Genotype
from lightning_nas.callbacks import GenotypeLogger, check_wandb_ready
from lightning_nas.callbacks.pictures import PNG_SIGNATURE
from lightning_nas.cli import main
from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods import DARTS
from tests.tiny import quiet_trainer, tiny_darts_space

REPO = Path(__file__).resolve().parents[2]
_AUTH = ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL")


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Offline W&B writing only under ``tmp_path``, with no account, no prompt and no network."""
    for name in _AUTH:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    for name, sub in (("WANDB_DIR", ""), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    yield tmp_path
    wandb.finish()


def test_offline_run_holds_architecture_table_images_and_artifacts(wandb_env: Path) -> None:
    from lightning.pytorch.loggers import WandbLogger

    pl.seed_everything(0)
    model = DARTS(tiny_darts_space(), arch_lr=0.05)
    data = SyntheticDataModule(num_samples=64, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=16)
    logger = WandbLogger(save_dir=wandb_env, project="lightning_nas_test")
    trainer = quiet_trainer(
        logger=logger,
        callbacks=[GenotypeLogger(cell_renderer="matplotlib"), ModelCheckpoint(save_last=True)],
        max_epochs=2,
        limit_val_batches=1,
    )
    trainer.fit(model, datamodule=data)
    run_id = logger.experiment.id
    wandb.finish()
    wandb.teardown()  # waits for the W&B service to write the whole run file

    (run_dir,) = (wandb_env / "wandb").glob(f"offline-run-*-{run_id}")
    media = run_dir / "files" / "media"
    tables = sorted((media / "table" / "arch").glob("table_*.table.json"), key=lambda p: int(p.name.split("_")[1]))
    assert len(tables) == 2  # one per epoch, each with every epoch so far
    table = json.loads(tables[-1].read_text())
    assert table["columns"][:4] == ["epoch", "step", "event", "result"]
    assert [row[0] for row in table["data"]] == [0, 1]
    assert Genotype.parse(table["data"][-1][3]) == model.genotype
    arch = model.current_arch()
    assert table["data"][-1][4:] == [str(arch[name]) for name in table["columns"][4:]]

    images = {path.name.rsplit("_", 2)[0] for path in (media / "images" / "arch").glob("*.png")}
    assert images == {"cell_normal", "cell_reduce", "probabilities"}
    for path in (media / "images" / "arch").glob("*.png"):
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        assert path.stat().st_size > 1000
    assert len(list((media / "images" / "arch").glob("*.png"))) == 6  # three pictures per epoch

    # Local files of this run live beside its checkpoints: <save_dir>/<project>/<run id>.
    local = wandb_env / "lightning_nas_test" / run_id
    assert len((local / "architecture_history.jsonl").read_text().splitlines()) == 2
    final = json.loads((local / "checkpoints" / "final_architecture.json").read_text())
    assert Genotype.from_json(final) == model.genotype
    # The offline run's transaction log records both artifacts, to be uploaded by `wandb sync`.
    record = (run_dir / f"run-{run_id}.wandb").read_bytes()
    assert f"architecture-{run_id}".encode() in record
    assert f"model-{run_id}".encode() in record


def test_check_wandb_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _AUTH:
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    with pytest.raises(RuntimeError, match="WANDB_MODE is not set and no W&B login was found.*WANDB_MODE=offline"):
        check_wandb_ready()
    monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.raises(RuntimeError, match="WANDB_MODE='online' and no W&B login"):
        check_wandb_ready()
    check_wandb_ready(offline=True)
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "0" * 40 + "\n")
    netrc.chmod(0o600)
    check_wandb_ready()  # logged in with `wandb login`
    netrc.unlink()
    monkeypatch.setenv("WANDB_MODE", "offline")
    check_wandb_ready()
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'lightning-nas\[wandb\]'"):
        check_wandb_ready()


def _cli_with_wandb(tmp_path: Path) -> list[str]:
    return [
        "fit",
        "--config",
        str(REPO / "configs/darts/digits.yaml"),
        "--trainer.logger=WandbLogger",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.max_steps=1",
    ]


@pytest.mark.timeout(120)
def test_cli_refuses_wandb_without_mode_or_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in _AUTH:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    with pytest.raises(SystemExit) as exit_info:
        main(_cli_with_wandb(tmp_path))
    assert exit_info.value.code == 2
    assert "no W&B login was found" in capsys.readouterr().err
    assert wandb.run is None  # nothing started, nothing waits on a prompt

    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(SystemExit):
        main(_cli_with_wandb(tmp_path))
    assert "needs the wandb package, which is not installed" in capsys.readouterr().err
