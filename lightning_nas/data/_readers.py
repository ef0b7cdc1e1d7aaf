"""Readers for the on-disk formats of the image datasets: IDX (MNIST family) and the CIFAR pickle batches.

Both readers return plain tensors: images as ``uint8`` and labels as ``int64``. They never download; see
``_download.py`` for fetching the files.
"""

from __future__ import annotations

import gzip
import math
import sys
from pathlib import Path
from typing import Literal

import torch

from lightning_nas._safe_io import load_plain_pickle

__all__ = ["CIFAR_FOLDERS", "read_cifar", "read_idx"]

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"): data is stored big-endian.
_IDX_DTYPES: dict[int, torch.dtype] = {
    0x08: torch.uint8,
    0x09: torch.int8,
    0x0B: torch.int16,
    0x0C: torch.int32,
    0x0D: torch.float32,
    0x0E: torch.float64,
}

#: Folder under the data root that holds each CIFAR variant, as the official archives unpack.
CIFAR_FOLDERS: dict[str, str] = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

_CIFAR_FILES: dict[tuple[str, bool], tuple[str, ...]] = {
    ("cifar10", True): tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("cifar10", False): ("test_batch",),
    ("cifar100", True): ("train",),
    ("cifar100", False): ("test",),
}
_CIFAR_LABEL_KEYS = {"cifar10": b"labels", "cifar100": b"fine_labels"}
_CIFAR_ROW_BYTES = 3 * 32 * 32


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (the MNIST format), gzip-compressed or plain.

    The header is two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32,
    ``0x0D`` float32, ``0x0E`` float64), the number of dimensions, then one big-endian uint32 size per dimension.
    The big-endian data follows. A path ending in ``.gz`` is decompressed on the fly.

    Args:
        path: The ``.gz`` or uncompressed IDX file.

    Returns:
        A tensor with the file's shape and dtype, in native byte order.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not valid IDX: bad magic, unknown type code, truncated or too long.

    Example:
        >>> import tempfile, os
        >>> header = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     file = os.path.join(folder, "tiny-idx2-ubyte")
        ...     _ = open(file, "wb").write(header + bytes(range(6)))
        ...     read_idx(file)
        tensor([[0, 1, 2],
                [3, 4, 5]], dtype=torch.uint8)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {str(path)!r} does not exist")
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{str(path)!r} is not an IDX file: its magic {data[:4].hex()!r} does not start with 0000")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        valid = ", ".join(f"0x{key:02X}" for key in _IDX_DTYPES)
        raise ValueError(f"{str(path)!r} has unknown IDX type code 0x{code:02X}; valid codes are {valid}")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"{str(path)!r} is truncated: its header needs {offset} bytes, the file has {len(data)}")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = _IDX_DTYPES[code]
    itemsize = torch.empty((), dtype=dtype).element_size()
    expected = offset + math.prod(shape) * itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(
            f"{str(path)!r} is {state}: shape {tuple(shape)} of {dtype} needs {expected} bytes,"
            f" the file has {len(data)}"
        )
    if expected == offset:
        return torch.empty(shape, dtype=dtype)
    raw = torch.frombuffer(data, dtype=torch.uint8, offset=offset, count=expected - offset)
    if itemsize > 1 and sys.byteorder == "little":
        raw = raw.view(-1, itemsize).flip(-1)
    return raw.contiguous().view(dtype).reshape(shape).clone()


def _read_bytes(path: Path) -> bytearray:
    """Return the (decompressed) content of ``path`` as a writable buffer."""
    if path.suffix != ".gz":
        return bytearray(path.read_bytes())
    try:
        with gzip.open(path, "rb") as stream:
            return bytearray(stream.read())
    except (OSError, EOFError) as error:
        raise ValueError(
            f"{str(path)!r} is not a readable gzip file: {error}; with download=True it is fetched again (its md5 is "
            "checked), or delete it and put a good copy there"
        ) from error


def read_cifar(
    root: str | Path, which: Literal["cifar10", "cifar100"], train: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the official python pickle batches of CIFAR-10 or CIFAR-100.

    CIFAR-10 lives in ``<root>/cifar-10-batches-py/`` (``data_batch_1`` to ``data_batch_5``, ``test_batch``, label
    key ``b"labels"``), CIFAR-100 in ``<root>/cifar-100-python/`` (``train``, ``test``, label key
    ``b"fine_labels"``). Each row of ``b"data"`` holds 3072 bytes: the 32x32 red plane, then green, then blue.

    The batches are Python pickles; they are read by :func:`~lightning_nas._safe_io.load_plain_pickle`, which
    rebuilds dicts, lists, bytes, numbers and numpy arrays only, so a file that names anything else is refused
    (``UnsafeFileError``) and nothing in it runs.

    Args:
        root: The data root that holds the dataset folder.
        which: ``"cifar10"`` or ``"cifar100"``.
        train: The training batches if ``True``, else the test batch.

    Returns:
        ``(images, labels)``: ``uint8`` images of shape ``[N, 3, 32, 32]`` and ``int64`` labels of shape ``[N]``.

    Raises:
        ValueError: If ``which`` is not a known variant or a batch does not have the CIFAR layout.
        FileNotFoundError: If a batch file is missing.

    Example:
        >>> read_cifar("/nonexistent", which="cifar1000", train=True)
        Traceback (most recent call last):
        ...
        ValueError: which='cifar1000' is not a CIFAR variant; valid options are 'cifar10', 'cifar100'
    """
    if which not in CIFAR_FOLDERS:
        valid = ", ".join(repr(key) for key in CIFAR_FOLDERS)
        raise ValueError(f"which={which!r} is not a CIFAR variant; valid options are {valid}")
    folder = Path(root) / CIFAR_FOLDERS[which]
    names = _CIFAR_FILES[(which, train)]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{which} files {missing} are missing in {str(folder)!r}; pass download=True or set root to the folder"
            f" that holds {CIFAR_FOLDERS[which]}/"
        )
    images, labels = [], []
    for name in names:
        batch_images, batch_labels = _read_cifar_batch(folder / name, _CIFAR_LABEL_KEYS[which])
        images.append(batch_images)
        labels.append(batch_labels)
    return torch.cat(images), torch.cat(labels)


def _read_cifar_batch(path: Path, label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpickle one CIFAR batch file (plain values and numpy arrays only) into ``uint8`` images and ``int64`` labels."""
    batch = load_plain_pickle(path, "CIFAR batch")
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise ValueError(f"{str(path)!r} is not a CIFAR batch: it needs the keys b'data' and {label_key!r}")
    data = torch.as_tensor(batch[b"data"])
    labels = torch.as_tensor(batch[label_key], dtype=torch.int64)
    if data.dtype != torch.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_ROW_BYTES:
        raise ValueError(
            f"{str(path)!r} has b'data' of shape {tuple(data.shape)} and dtype {data.dtype};"
            f" expected uint8 rows of {_CIFAR_ROW_BYTES} bytes"
        )
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{str(path)!r} has {labels.numel()} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32).clone(), labels
