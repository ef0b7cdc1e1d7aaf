"""Locating, downloading and verifying the dataset files under a data root.

The layout of a data root follows what the official archives and torchvision's raw folders look like::

    <root>/MNIST/raw/train-images-idx3-ubyte.gz        (and the other three IDX files, .gz or uncompressed)
    <root>/FashionMNIST/raw/...
    <root>/cifar-10-batches-py/data_batch_1 ...       (unpacked from cifar-10-python.tar.gz)
    <root>/cifar-100-python/train, test

Downloads use only the standard library: the file is streamed into a temporary file in the destination folder,
its md5 is checked, and only then is it moved into place with ``os.replace``, so an interrupted or corrupted
download never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lightning_nas.arch import publish_file

__all__ = ["DATASET_FILES", "DatasetFiles", "default_root", "download_and_verify", "ensure_dataset", "extract_tar"]

ROOT_ENV = "LIGHTNING_NAS_DATA"
_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DatasetFiles:
    """Where a dataset lives under the data root, and how to fetch it.

    Args:
        folder: Folder relative to the data root that holds ``files``.
        files: The file names the readers need. IDX files may also be present without their ``.gz`` suffix.
        md5: ``{file name: md5}`` of the files to download (the IDX files, or the CIFAR archive).
        mirrors: Base URLs tried in order; a file's URL is the mirror plus its name.
        archive: Name of a ``.tar.gz`` that unpacks into ``folder`` (CIFAR), or ``None`` to download ``files``.
    """

    folder: str
    files: tuple[str, ...]
    md5: dict[str, str]
    mirrors: tuple[str, ...]
    archive: str | None = None


_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

#: Metadata of every dataset that can be downloaded, keyed by its loader name.
DATASET_FILES: dict[str, DatasetFiles] = {
    "mnist": DatasetFiles(
        folder="MNIST/raw",
        files=tuple(f"{name}.gz" for name in _IDX_NAMES),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
    ),
    "fashion_mnist": DatasetFiles(
        folder="FashionMNIST/raw",
        files=tuple(f"{name}.gz" for name in _IDX_NAMES),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
    "cifar10": DatasetFiles(
        folder="cifar-10-batches-py",
        files=(*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"),
        md5={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        archive="cifar-10-python.tar.gz",
    ),
    "cifar100": DatasetFiles(
        folder="cifar-100-python",
        files=("train", "test"),
        md5={"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        archive="cifar-100-python.tar.gz",
    ),
}


def default_root(root: str | Path | None = None) -> Path:
    """Resolve the data root: ``root`` if given, else ``$LIGHTNING_NAS_DATA``, else ``~/.cache/lightning_nas``.

    Args:
        root: An explicit data root, or ``None``.

    Returns:
        The resolved folder (``~`` expanded). It may not exist yet.

    Example:
        >>> default_root("~/data").name
        'data'
    """
    if root is None:
        root = os.environ.get(ROOT_ENV) or Path.home() / ".cache" / "lightning_nas"
    return Path(root).expanduser()


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_and_verify(url: str, dest: str | Path, md5: str) -> Path:
    """Download ``url`` to ``dest`` and check its md5; skip the download if ``dest`` already has that md5.

    The bytes go to a temporary file in ``dest``'s folder, which replaces ``dest`` atomically only when the md5
    matches; on any failure the temporary file is removed.

    Args:
        url: Any URL ``urllib.request.urlopen`` accepts (``https://``, ``http://``, ``file://``).
        dest: The final file path. Its folder is created if needed.
        md5: The expected lower-case hex md5 of the file.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        ValueError: If the downloaded bytes do not have the expected md5.
        OSError: If the URL cannot be fetched (``urllib.error.URLError`` is a subclass).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     source = Path(folder, "source.bin")
        ...     _ = source.write_bytes(b"abc")
        ...     download_and_verify(source.as_uri(), Path(folder, "copy.bin"), "900150983cd24fb0d6963f7d28e17f72").name
        'copy.bin'
    """
    dest = Path(dest)
    if dest.is_file() and _md5(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, partial_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    partial = Path(partial_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise ValueError(f"md5 mismatch for {url!r}: expected {md5}, got {digest.hexdigest()}; nothing was saved")
        publish_file(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def extract_tar(archive: str | Path, dest: str | Path) -> None:
    """Unpack a ``.tar.gz`` into ``dest``, refusing links, devices and paths that leave ``dest``.

    Args:
        archive: The tar archive (any compression ``tarfile`` detects).
        dest: The folder to unpack into.

    Raises:
        ValueError: If a member is not a plain file or folder, or its path is absolute or contains ``..``.
    """
    dest = Path(dest)
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            parts = Path(member.name).parts
            if Path(member.name).is_absolute() or ".." in parts or not (member.isfile() or member.isdir()):
                raise ValueError(f"refusing to extract {member.name!r} from {str(archive)!r}: unsafe member")
        for member in members:
            target = dest / member.name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None  # a regular file always has content
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out)


def _present(folder: Path, name: str) -> bool:
    """Whether ``name`` exists in ``folder``; a ``.gz`` name also counts if its uncompressed form exists."""
    return (folder / name).is_file() or (name.endswith(".gz") and (folder / name[: -len(".gz")]).is_file())


def ensure_dataset(name: str, root: str | Path | None = None, download: bool = False) -> Path:
    """Make sure the files of dataset ``name`` are under ``root``, downloading them if asked to.

    Args:
        name: A key of ``DATASET_FILES``: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"`` or ``"cifar100"``.
        root: The data root (see ``default_root``).
        download: Fetch missing files from the mirrors (md5-checked) instead of failing; a present file whose md5
            is not the dataset's (a truncated or corrupt download) is fetched again.

    Returns:
        The folder that holds the dataset's files.

    Raises:
        ValueError: If ``name`` is unknown.
        FileNotFoundError: If files are missing and ``download`` is false; the message names the folder and files.
        OSError: If every mirror failed.

    Example:
        >>> ensure_dataset("mnist", root="/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: mnist is not in '/nonexistent/MNIST/raw': missing train-images-idx3-ubyte.gz, ...
    """
    if name not in DATASET_FILES:
        raise ValueError(f"unknown dataset {name!r}; valid options are {', '.join(map(repr, DATASET_FILES))}")
    spec = DATASET_FILES[name]
    base = default_root(root)
    folder = base / spec.folder
    missing = [file for file in spec.files if not _present(folder, file)]
    if download and spec.archive is None:  # a present file of another md5 (truncated, corrupt) is fetched again
        missing += [
            file
            for file in spec.files
            if file not in missing and (folder / file).is_file() and _md5(folder / file) != spec.md5[file]
        ]
    if not missing:
        return folder
    if not download:
        raise FileNotFoundError(
            f"{name} is not in {str(folder)!r}: missing {', '.join(missing)}."
            f" Pass download=True to fetch it, or set root (or ${ROOT_ENV}) to the folder that holds {spec.folder}/"
        )
    if spec.archive is None:
        for file in missing:
            _download_from_mirrors(spec, file, folder / file)
    else:
        archive = _download_from_mirrors(spec, spec.archive, base / spec.archive)
        extract_tar(archive, base)
    return folder


def _download_from_mirrors(spec: DatasetFiles, file: str, dest: Path) -> Path:
    """Try each mirror of ``spec`` in turn for ``file``; raise ``OSError`` listing every failure."""
    errors = []
    for mirror in spec.mirrors:
        try:
            return download_and_verify(mirror + file, dest, spec.md5[file])
        except (OSError, ValueError) as error:
            errors.append(f"{mirror + file}: {error}")
    raise OSError(f"could not download {file} into {str(dest.parent)!r}: " + "; ".join(errors))
