"""Turn an elastic supernet checkpoint into a standalone subnet: BN recalibrated, saved for plain PyTorch / ONNX.

What ``lightning-nas export --subnet ...`` runs. The subnet is saved as a ``torch.export`` program (``.pt2``) with
its architecture inside, which loads without this library::

    import torch
    extra = {"architecture.json": ""}
    net = torch.export.load("subnet.pt2", extra_files=extra).module()   # eval-mode graph, any batch size
    logits = net(images)                # normalised images [B, C, S, S], S = --input_size (default: the resolution)

The batch size is dynamic; the image side is fixed at export (``--input_size``), so export once per input size.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from torch import Tensor, nn

from lightning_nas._safe_io import load_checkpoint
from lightning_nas.arch import Arch, validate_arch
from lightning_nas.calibration import collect_calibration_images, normalised_batches, recalibrate_batchnorm
from lightning_nas.methods.base import CHECKPOINT_KEY
from lightning_nas.spaces.elastic import ElasticSpace, elastic_space_from_config

__all__ = ["calibration_data", "load_elastic_checkpoint", "require_onnx", "resolve_subnet", "save_onnx", "save_subnet"]

ARCH_FILE = "architecture.json"


def load_elastic_checkpoint(path: str | Path) -> tuple[ElasticSpace, dict[str, Any]]:
    """The supernet of an elastic method's checkpoint (weights and BN statistics loaded) and its metadata.

    Raises:
        UnsafeFileError: the file holds objects beyond tensors and plain values, or names a space class outside
            lightning_nas and the modules already imported (refused, never loaded).
        ValueError: the checkpoint holds no elastic space (e.g. a DARTS search).
    """
    checkpoint = load_checkpoint(path, mmap=False)
    meta = checkpoint.get(CHECKPOINT_KEY, {})
    if "space_class" not in meta:
        raise ValueError(
            f"{str(path)!r} is a {meta.get('method')} checkpoint on {meta.get('space')}, not an elastic supernet; "
            "--subnet needs a OnceForAll (or other elastic method) checkpoint"
        )
    space = elastic_space_from_config(meta["space_class"], meta["space_config"], source=path)
    prefix = "space."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    space.load_state_dict(state)
    return space.eval(), meta


def resolve_subnet(spec: str, space: ElasticSpace, limits: Mapping[str, Any] | None = None) -> Arch:
    """``"max"``, ``"min"``, a JSON file or JSON text, checked against ``space`` and the trained ``limits``.

    Raises:
        ValueError: a bad key or value, or a size the checkpoint's phase has not trained, naming the allowed values.
    """
    if spec in ("max", "min"):
        return space.sample_max_subnet(limits) if spec == "max" else space.sample_min_subnet(limits)
    if not spec.lstrip().startswith("{") and not Path(spec).is_file():
        raise FileNotFoundError(f"--subnet must be max, min, a JSON file or JSON text; {spec!r} is none of these")
    text = Path(spec).read_text(encoding="utf-8") if not spec.lstrip().startswith("{") else spec
    try:
        arch = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--subnet must be max, min, a JSON file or JSON text; {spec!r} is not JSON ({err})") from None
    if not isinstance(arch, dict):
        raise ValueError(f"a subnet is a JSON object of choice name -> value, got {arch!r}")
    arch = space.validate_arch(arch)
    try:
        return validate_arch(arch, space.restrict(limits))
    except ValueError as err:
        raise ValueError(f"the checkpoint's phase has not trained this subnet: {err}") from None


def calibration_data(config_path: str | Path, num_images: int, batch_size: int) -> list[Tensor]:
    """Normalised calibration batches from the ``data`` section of a ``lightning-nas fit`` config."""
    from jsonargparse import ArgumentParser

    payload = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    if "data" not in payload:
        raise ValueError(f"{str(config_path)!r} has no 'data' section to take calibration images from")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningDataModule, "data")
    datamodule = parser.instantiate_classes(parser.parse_object({"data": payload["data"]})).data
    datamodule.prepare_data()  # a recipe with download: true fetches its data here too, as fit does
    datamodule.setup("fit")
    images, labels = collect_calibration_images(datamodule.train_dataloader(), num_images)
    return normalised_batches(datamodule, images, labels, batch_size)


def export_subnet(space: ElasticSpace, arch: Arch, batches: list[Tensor] | None) -> nn.Module:
    """The static subnet in eval mode, its BN statistics recalibrated on ``batches`` (unless ``None``)."""
    subnet = space.export_subnet(arch)
    if batches is not None:
        recalibrate_batchnorm(subnet, batches)
    return subnet.eval()


def save_subnet(subnet: nn.Module, arch: Arch, example: Tensor, path: str | Path) -> Path:
    """Save ``subnet`` as a ``torch.export`` program with a dynamic batch size and ``architecture.json`` inside."""
    batch = torch.export.Dim("batch")
    program = torch.export.export(subnet.eval(), (example,), dynamic_shapes=({0: batch},))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, target, extra_files={ARCH_FILE: json.dumps(arch)})
    return target


def require_onnx() -> None:
    """Raise ``ImportError`` naming the extra if ``onnx`` or ``onnxscript`` is missing (checked before any work)."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f'ONNX export needs {" and ".join(missing)}: pip install "lightning-nas[onnx]"')


def save_onnx(subnet: nn.Module, example: Tensor, path: str | Path) -> Path:
    """Export ``subnet`` to ONNX (input ``images`` with a dynamic batch, output ``logits``).

    Raises:
        ImportError: ``onnx`` or ``onnxscript`` is missing (``pip install "lightning-nas[onnx]"``).
    """
    require_onnx()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        subnet.eval(),
        (example,),
        str(target),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    return target
