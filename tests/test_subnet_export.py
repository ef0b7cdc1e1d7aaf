"""``lightning-nas export --subnet`` (issue 4): an OFA run's subnet saved with recalibrated BN, loaded by plain
torch with the same logits as the library's own export; subnets the phase has not trained are refused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from lightning_nas.cli import main
from lightning_nas.subnet_export import calibration_data, export_subnet, load_elastic_checkpoint, resolve_subnet

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ofa_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A two-epoch OFA run (phases full and kernel) of a tiny space on 128 MNIST images; its last checkpoint."""
    save_dir = tmp_path_factory.mktemp("runs")
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/ofa/mnist.yaml"),
            f"--trainer.logger.init_args.save_dir={save_dir}",
            "--trainer.max_epochs=2",
            "--trainer.limit_val_batches=2",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.enable_progress_bar=false",
            "--model.phase_epochs=[1,1,0,0,0,0]",
            "--model.phase_warmup_epochs=[0,0,0,0,0,0]",
            "--model.calibration_images=64",
            "--model.space.init_args.widths=[8,8,8,16,16,24,24,48,64]",
            "--model.space.init_args.resolutions=[8,12]",
            "--model.space.init_args.depths=[1,2]",
            f"--data.root={data_root}",
            "--data.subset=128",
            "--data.eval_batch_size=64",
        ]
    )
    return save_dir / "ofa_mnist" / "version_0" / "checkpoints" / "last.ckpt"


def test_exported_subnet_loads_in_plain_torch_with_the_library_logits(ofa_run: Path, tmp_path: Path) -> None:
    output = tmp_path / "min.pt2"
    args = ["export", "--ckpt_path", str(ofa_run), "--subnet", "min", "--output", str(output)]
    assert main([*args, "--calibration_images", "64", "--calibration_batch_size", "32", "--input_size", "28"]) == 0
    extra = {"architecture.json": ""}
    loaded = torch.export.load(output, extra_files=extra).module()  # plain torch: no lightning_nas class involved
    arch = json.loads(extra["architecture.json"])

    space, meta = load_elastic_checkpoint(ofa_run)
    assert meta["phase"] == "kernel"
    assert arch == resolve_subnet("min", space, meta["limits"])
    batches = calibration_data(ofa_run.parent.parent / "config.yaml", 64, 32)
    expected_net = export_subnet(space, arch, batches)
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(loaded(x), expected_net(x), atol=1e-5, rtol=1e-5)
    unrecalibrated = export_subnet(space, arch, None)
    assert not torch.allclose(unrecalibrated(x), expected_net(x), atol=1e-4)


def test_subnets_outside_the_trained_phase_are_refused(
    ofa_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space, meta = load_elastic_checkpoint(ofa_run)
    arch = dict(space.sample_max_subnet(), **{"stage1/depth": 1})
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(ofa_run), "--subnet", json.dumps(arch), "--output", str(tmp_path / "x.pt2")])
    assert exit_info.value.code == 2
    assert "phase has not trained this subnet: choice 'stage1/depth' got 1; valid values: 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(ofa_run), "--subnet", '{"resolution": 8}', "--no_recalibrate"])
    assert "architecture is missing choices" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a misspelt max: before, '[Errno 2] No such file or directory: 'mini''
        main(["export", "--ckpt_path", str(ofa_run), "--subnet", "mini", "--output", str(tmp_path / "x.pt2")])
    assert "--subnet must be max, min, a JSON file or JSON text; 'mini' is none of these" in capsys.readouterr().err


@pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None,
    reason="ONNX export needs the optional onnx and onnxscript packages (pip install lightning-nas[onnx])",
)
def test_onnx_export(ofa_run: Path, tmp_path: Path) -> None:
    import onnx

    target = tmp_path / "max.onnx"
    args = ["export", "--ckpt_path", str(ofa_run), "--subnet", "max", "--output", str(tmp_path / "max.pt2")]
    assert main([*args, "--no_recalibrate", "--onnx", str(target)]) == 0
    onnx.checker.check_model(onnx.load(str(target)))


def test_onnx_without_the_packages_names_the_extra(
    ofa_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxscript") is not None:
        pytest.skip("onnx is installed")
    args = ["export", "--ckpt_path", str(ofa_run), "--subnet", "max", "--output", str(tmp_path / "max.pt2")]
    with pytest.raises(SystemExit):
        main([*args, "--no_recalibrate", "--onnx", str(tmp_path / "max.onnx")])
    assert 'pip install "lightning-nas[onnx]"' in capsys.readouterr().err
    assert not (tmp_path / "max.pt2").exists()  # checked first: a rerun once onnx is installed needs no --overwrite
