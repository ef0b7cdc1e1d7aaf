"""Images in class subfolders, from a directory or straight from a ``.tar`` / ``.tar.gz`` archive, decoded once.

The layout is torchvision's ``ImageFolder`` one, optionally under split folders::

    <source>/[<split>/]<class>/<any/sub/path>/<name>.<ext>

The class index is the position of the class folder in the sorted folder names, and within a class the images
follow the sorted paths. Archives are streamed with :mod:`tarfile` (nothing is extracted to disk). Images are
decoded with Pillow into one preallocated ``uint8`` buffer, and the result is cached as a tensor file keyed by the
source's size and modification time and by the reading options, so a second run loads it in a fraction of the
decoding time. The cache holds plain tensors and a small metadata dict, is loaded with ``weights_only=True``,
and is written through a temporary file and a rename, so an interrupted run never leaves half a cache.

The cache folder is ``cache_dir`` if given, else ``$LIGHTNING_NAS_CACHE``, else ``~/.cache/lightning_nas/images``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lightning_nas._safe_io import load_checkpoint
from lightning_nas.arch import publish_file
from lightning_nas.data._download import default_root
from lightning_nas.data.datasets import InMemoryImageDataset

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "CACHE_ENV",
    "CIFAR10_CLASSES",
    "IMAGE_EXTENSIONS",
    "ImageFolderData",
    "default_cache_dir",
    "load_cifar10_jpeg",
    "read_image_folder",
    "read_image_folder_data",
]

log = logging.getLogger(__name__)

CACHE_ENV = "LIGHTNING_NAS_CACHE"
#: File name endings read as images (case-insensitive), and the Pillow format tried first for each.
IMAGE_EXTENSIONS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".ppm": "PPM",
    ".pgm": "PPM",
}
#: CIFAR-10's class names in its label order (which is also their sorted order).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_ARCHIVE = "CIFAR10-jpeg/CIFAR-10-images.tar.gz"
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
_CACHE_FORMAT = 2  # 2: 16-bit images are scaled to 8 bits (1 clipped them at 255)
_MAX_NAMED = 5


@dataclass(frozen=True)
class ImageFolderData:
    """What :func:`read_image_folder_data` returns: the images and what is known about them.

    Args:
        dataset: ``uint8`` images ``[N, C, H, W]`` and ``int64`` labels.
        classes: Sorted class folder names; label ``k`` is ``classes[k]``.
        mean: Per-channel mean of the images scaled to ``[0, 1]``.
        std: Per-channel standard deviation of the images scaled to ``[0, 1]``.
        skipped: Unreadable images left out (only with ``skip_corrupt=True``), as ``path: reason``.
        cache_file: The cache file the data came from or was written to.
        from_cache: Whether the data was loaded from the cache rather than decoded.
    """

    dataset: InMemoryImageDataset
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    skipped: list[str]
    cache_file: Path
    from_cache: bool


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir`` if given, else ``$LIGHTNING_NAS_CACHE``, else ``~/.cache/lightning_nas/images``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "lightning_nas" / "images"


def read_image_folder(
    source: str | os.PathLike[str],
    split: str | None = None,
    *,
    image_size: int | Sequence[int] | None = None,
    grayscale: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    skip_corrupt: bool = False,
) -> tuple[InMemoryImageDataset, list[str]]:
    """Read images in class subfolders from a directory or a ``.tar`` / ``.tar.gz`` / ``.tgz`` archive.

    Args:
        source: The folder or archive.
        split: ``None`` when the class folders are at the top of ``source``, else the split folder that holds
            them (``"train"``, ``"test"``, ``"val"``, ...).
        image_size: ``None``: every image must already have the same size. An int ``s`` or ``(h, w)``: each image
            is scaled (keeping its aspect ratio, bilinear with antialiasing) until it covers ``s x s`` / ``h x w``
            and centre-cropped to it; large JPEGs are first reduced by the decoder's DCT scaling (Pillow's
            ``draft``).
        grayscale: One channel (Pillow's ``L`` conversion) instead of three (``RGB``; alpha is dropped).
        cache_dir: Where the decoded tensors are cached; ``None`` means :func:`default_cache_dir`.
        skip_corrupt: Leave unreadable images out with one warning counting them, instead of raising.

    Returns:
        ``(dataset, classes)``: ``uint8`` images ``[N, C, H, W]`` with ``int64`` labels, and the sorted class names.

    Raises:
        FileNotFoundError: If ``source`` does not exist.
        ValueError: For a missing split, no class folders, an empty class folder, a non-image file, mixed sizes
            without ``image_size``, or (without ``skip_corrupt``) an image Pillow cannot decode; the message names
            the file or value and the valid options.
        ImportError: If Pillow is not installed.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("cat", "dog"):
        ...     (root / name).mkdir()
        ...     Image.new("RGB", (6, 4), (255, 0, 0)).save(root / name / "0.png")
        >>> dataset, classes = read_image_folder(root, cache_dir=root / "cache")
        >>> classes, tuple(dataset.images.shape), dataset.labels.tolist()
        (['cat', 'dog'], (2, 3, 4, 6), [0, 1])
    """
    data = read_image_folder_data(
        source, split, image_size=image_size, grayscale=grayscale, cache_dir=cache_dir, skip_corrupt=skip_corrupt
    )
    return data.dataset, data.classes


def read_image_folder_data(
    source: str | os.PathLike[str],
    split: str | None = None,
    *,
    image_size: int | Sequence[int] | None = None,
    grayscale: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    skip_corrupt: bool = False,
) -> ImageFolderData:
    """:func:`read_image_folder` that also returns the channel statistics, skipped files and the cache file.

    Arguments and errors as in :func:`read_image_folder`.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"image folder or archive not found: {path}")
    if split is not None and (not split or "/" in split or split in (".", "..")):
        raise ValueError(f"split must be the name of one folder, got {split!r}")
    size = _check_image_size(image_size)
    if path.is_file() and not _is_archive(path):
        raise ValueError(f"{path} is a file but not an archive; give a folder or one of {', '.join(_ARCHIVE_SUFFIXES)}")
    options = {"split": split, "image_size": size, "grayscale": grayscale, "skip_corrupt": skip_corrupt}
    key = {"format": _CACHE_FORMAT, "source": str(path.resolve()), **options}
    cache_file = _cache_file(default_cache_dir(cache_dir), path, split, key)
    fingerprint = _fingerprint(path, split)
    cached = _load_cache(cache_file, key, fingerprint)
    if cached is not None:
        _warn_skipped(cached.skipped, path)
        return cached
    members = _archive_members(path, split) if path.is_file() else _folder_members(path, split)
    images, labels, skipped = _decode_all(members, size, grayscale, skip_corrupt)
    mean, std = _channel_stats(images)
    classes = members.classes
    payload = {
        "images": images,
        "labels": labels,
        "meta": {
            "key": key,
            "fingerprint": fingerprint,
            "classes": classes,
            "mean": list(mean),
            "std": list(std),
            "skipped": skipped,
        },
    }
    _save_atomically(payload, cache_file)
    _warn_skipped(skipped, path)
    return ImageFolderData(InMemoryImageDataset(images, labels), classes, mean, std, skipped, cache_file, False)


def load_cifar10_jpeg(
    root: str | Path | None = None,
    train: bool = True,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> InMemoryImageDataset:
    """Load CIFAR-10 from the JPEG archive ``<root>/CIFAR10-jpeg/CIFAR-10-images.tar.gz``.

    The archive holds ``train/<class>/NNNN.jpg`` (50,000) and ``test/<class>/NNNN.jpg`` (10,000); the sorted class
    names are CIFAR-10's label order, so labels match CIFAR-10's. Decoded once and cached (see
    :func:`read_image_folder`).

    Args:
        root: Data root; ``None`` means ``$LIGHTNING_NAS_DATA`` or ``~/.cache/lightning_nas``.
        train: The training split if ``True``, else the test split.
        cache_dir: Cache folder; ``None`` means :func:`default_cache_dir`.

    Returns:
        ``uint8`` images ``[N, 3, 32, 32]`` with ``int64`` labels.

    Raises:
        FileNotFoundError: If the archive is missing (nothing is downloaded).
        ValueError: If the archive's classes or image size are not CIFAR-10's.
    """
    archive = default_root(root) / CIFAR10_ARCHIVE
    if not archive.is_file():
        raise FileNotFoundError(f"CIFAR-10 JPEG archive not found: {archive} (nothing is downloaded)")
    dataset, classes = read_image_folder(archive, "train" if train else "test", cache_dir=cache_dir)
    if tuple(classes) != CIFAR10_CLASSES:
        raise ValueError(f"{archive} has classes {classes}, expected CIFAR-10's {list(CIFAR10_CLASSES)}")
    if tuple(dataset.images.shape[1:]) != (3, 32, 32):
        raise ValueError(f"{archive} has images of shape {tuple(dataset.images.shape[1:])}, expected (3, 32, 32)")
    return dataset


# ---------------------------------------------------------------------------------------------------------------
# Listing: which files are the images of which class


@dataclass
class _Members:
    """The images to decode, in dataset order: display names, a reader per image, and their labels."""

    where: str
    classes: list[str]
    names: list[str]
    labels: list[int]
    read: Callable[[int], bytes]


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _check_image_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        pair: tuple[Any, ...] = (image_size, image_size)
    elif isinstance(image_size, Sequence) and not isinstance(image_size, str):
        pair = tuple(image_size)
    else:
        raise ValueError(f"image_size must be None, an int or (height, width), got {image_size!r}")
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"image_size must be a positive int or (height, width) of positive ints, got {image_size!r}")
    return int(pair[0]), int(pair[1])


def _extension_error(where: str, name: str) -> ValueError:
    return ValueError(
        f"{where}: {name!r} is not an image file; image files end in {', '.join(IMAGE_EXTENSIONS)}"
        " (hidden files are ignored)"
    )


def _group(
    where: str, split: str | None, tops: set[str], classes: set[str], files: dict[str, list[str]]
) -> tuple[list[str], list[str], list[int]]:
    """Sorted classes, then the files of each in sorted order; errors for an unusable layout."""
    if split is not None and split not in tops:
        valid = ", ".join(sorted(tops)) or "none"
        raise ValueError(f"{where} has no split folder {split!r}; its top-level folders are: {valid}")
    inside = f"{where}/{split}" if split is not None else where
    if not classes:
        raise ValueError(f"{inside} has no class folders; expected <class>/<image> files under it")
    if split is None and len(classes) > 1 and classes <= set(_SPLIT_NAMES):
        raise ValueError(
            f"{where} holds split folders ({', '.join(sorted(classes))}), not class folders; pass split= one of them"
        )
    ordered = sorted(classes)
    empty = [name for name in ordered if not files.get(name)]
    if empty:
        raise ValueError(f"{inside}: class folder(s) {', '.join(map(repr, empty))} hold no image files")
    names: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(ordered):
        for file in sorted(files[name]):
            names.append(file)
            labels.append(label)
    return ordered, names, labels


def _folder_members(folder: Path, split: str | None) -> _Members:
    tops = {entry.name for entry in folder.iterdir() if entry.is_dir() and not _is_hidden(entry.name)}
    base = folder / split if split is not None else folder
    classes: set[str] = set()
    files: dict[str, list[str]] = {}
    if split is None or split in tops:
        for entry in sorted(base.iterdir()):
            if not entry.is_dir() or _is_hidden(entry.name):
                continue  # files next to the class folders (a README, a licence) are not images of a class
            classes.add(entry.name)
            found = files.setdefault(entry.name, [])
            for directory, subdirs, names in os.walk(entry):
                subdirs[:] = [name for name in subdirs if not _is_hidden(name)]
                for name in names:
                    if _is_hidden(name):
                        continue
                    relative = Path(directory, name).relative_to(folder).as_posix()
                    if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                        raise _extension_error(str(folder), relative)
                    found.append(relative)
    ordered, names, labels = _group(str(folder), split, tops, classes, files)
    return _Members(str(folder), ordered, names, labels, lambda i: (folder / names[i]).read_bytes())


def _archive_members(archive: Path, split: str | None) -> _Members:
    """Stream the archive once, keeping the bytes of the requested split's images.

    An archive whose entries all sit in one top folder (``flowers/train/rose/1.jpg``) is read as if that folder
    were the archive's top.
    """
    depth = 1 if split is None else 2  # path components before the file: [split/]class
    entries: dict[str, bytes] = {}
    directories: set[str] = set()
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                name = member.name.removeprefix("./").strip("/")
                parts = name.split("/")
                if not name or any(_is_hidden(part) for part in parts):
                    continue
                if member.isdir():
                    directories.add(name)
                    continue
                directories.update("/".join(parts[:i]) for i in range(1, len(parts)))
                # keep what could be an image of the split, with or without one wrapping top folder
                if not member.isfile() or len(parts) <= depth:
                    continue
                if split is not None and split not in parts[:2]:
                    continue
                handle = tar.extractfile(member)
                if handle is not None:
                    entries[name] = handle.read()
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"cannot read the archive {archive}: {error}") from error
    tops = {name for name in directories if "/" not in name}
    prefix = ""
    if len(tops) == 1 and (split is None or split not in tops):
        (top,) = tops
        prefix = top + "/"
        directories = {name[len(prefix) :] for name in directories if name.startswith(prefix)}
        entries = {name[len(prefix) :]: blob for name, blob in entries.items() if name.startswith(prefix)}
        tops = {name for name in directories if "/" not in name}
    base = "" if split is None else split + "/"
    classes = {name[len(base) :] for name in directories if name.startswith(base) and name != split}
    classes = {name for name in classes if "/" not in name}
    files: dict[str, list[str]] = {}
    for name in entries:
        if not name.startswith(base) or name.count("/") < depth:
            continue
        class_name = name[len(base) :].split("/")[0]
        if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
            raise _extension_error(str(archive), prefix + name)
        files.setdefault(class_name, []).append(name)
    ordered, names, labels = _group(str(archive), split, tops, classes, files)
    blobs = [entries.pop(name) for name in names]
    entries.clear()
    shown = [prefix + name for name in names]
    return _Members(str(archive), ordered, shown, labels, blobs.__getitem__)


# ---------------------------------------------------------------------------------------------------------------
# Decoding into one buffer


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError(
            "reading image folders needs Pillow: pip install 'lightning-nas[images]' (or pillow)"
        ) from error
    return Image


def _decode(blob: bytes, extension: str, size: tuple[int, int] | None, mode: str) -> PILImage:
    """Decode one image into ``mode`` (``RGB``/``L``), scaled and centre-cropped to ``size`` (h, w) if given."""
    Image = _pillow()
    try:
        image = Image.open(io.BytesIO(blob), formats=(IMAGE_EXTENSIONS[extension],))
    except Image.UnidentifiedImageError:
        image = Image.open(io.BytesIO(blob))  # content and extension disagree (a PNG named .jpg)
    if size is not None:
        height, width = size
        scale = max(height / image.height, width / image.width)
        if scale < 0.5:
            image.draft(None, (max(width, round(image.width * scale)), max(height, round(image.height * scale))))
    image.load()
    if image.mode.startswith("I"):  # 16-bit (I;16, I;16B, ...; a 16-bit PNG or TIFF) or 32-bit integer grey levels
        # Pillow's convert clips these at 255; scaled instead, 0..65535 -> 0..255 (a 16-bit image's full range)
        levels = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        image = Image.fromarray(((levels * 255 + 32767) // 65535).astype(np.uint8))
    elif image.mode == "F":
        raise ValueError("a 32-bit floating-point image (mode F) has no fixed range to read; save it as 8 or 16 bits")
    if image.mode != mode:
        image = image.convert(mode)
    if size is not None and (image.height, image.width) != size:
        height, width = size
        scale = max(height / image.height, width / image.width)
        crop_w, crop_h = width / scale, height / scale
        left, top = (image.width - crop_w) / 2, (image.height - crop_h) / 2
        image = image.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
    return image


def _decode_all(
    members: _Members, size: tuple[int, int] | None, grayscale: bool, skip_corrupt: bool
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    Image = _pillow()
    mode, channels = ("L", 1) if grayscale else ("RGB", 3)
    count = len(members.names)
    log.info("decoding %d images from %s", count, members.where)
    buffer: np.ndarray | None = None
    keep = np.ones(count, dtype=bool)
    skipped: list[str] = []
    first = ""
    for index, name in enumerate(members.names):
        try:
            image = _decode(members.read(index), Path(name).suffix.lower(), size, mode)
            pixels = np.asarray(image)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            if not skip_corrupt:
                raise ValueError(
                    f"cannot decode image {members.where}: {name}: {error} (pass skip_corrupt=True to leave it out)"
                ) from error
            keep[index] = False
            skipped.append(f"{name}: {error}")
            continue
        if buffer is None:
            buffer = np.empty((count, pixels.shape[0], pixels.shape[1], channels), dtype=np.uint8)
            first = name
        if pixels.shape[:2] != buffer.shape[1:3]:
            raise ValueError(
                f"{members.where}: {name} is {pixels.shape[0]}x{pixels.shape[1]} (h x w) but {first} is"
                f" {buffer.shape[1]}x{buffer.shape[2]}; pass image_size= (an int or (height, width)) to resize them"
            )
        buffer[index] = pixels.reshape(buffer.shape[1:])
    if buffer is None:
        raise ValueError(f"{members.where}: none of the {count} images could be decoded: {skipped[:_MAX_NAMED]}")
    if skipped:
        buffer = buffer[keep]
    images = torch.from_numpy(buffer).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(members.labels, dtype=torch.int64)[torch.from_numpy(keep)]
    return images, labels, skipped


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and standard deviation in ``[0, 1]``, from 256-bin histograms."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * values).sum() / total
        variance = (counts * (values - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(float(variance.sqrt()))
    return tuple(means), tuple(stds)


def _warn_skipped(skipped: list[str], source: Path) -> None:
    if skipped:
        shown = "; ".join(skipped[:_MAX_NAMED]) + (" ..." if len(skipped) > _MAX_NAMED else "")
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) in {source}: {shown}", UserWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------------------------
# The cache


def _cache_file(cache_dir: Path, source: Path, split: str | None, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.name)[:60] or "images"
    return cache_dir / f"{stem}-{split or 'all'}-{digest}.pt"


def _fingerprint(path: Path, split: str | None) -> list[int]:
    """``[size, mtime_ns]`` of an archive; for a folder, the file count, total size and newest mtime under it."""
    if path.is_file():
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]
    base = path / split if split is not None and (path / split).is_dir() else path
    count, total, newest = 0, 0, max(path.stat().st_mtime_ns, base.stat().st_mtime_ns)
    for entry in _walk(base):
        stat = entry.stat()
        newest = max(newest, stat.st_mtime_ns)
        if entry.is_file():
            count += 1
            total += stat.st_size
    return [count, total, newest]


def _walk(folder: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        for entry in entries:
            yield entry
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path))


def _load_cache(cache_file: Path, key: dict[str, Any], fingerprint: list[int]) -> ImageFolderData | None:
    """The cached data if the file exists, loads safely and matches ``key`` and ``fingerprint``; else ``None``."""
    if not cache_file.is_file():
        return None
    try:
        payload = load_checkpoint(cache_file, mmap=False)
        meta = payload["meta"]
        if meta["key"] != key or list(meta["fingerprint"]) != fingerprint:
            log.info("the source changed since %s was written; decoding again", cache_file)
            return None
        dataset = InMemoryImageDataset(payload["images"], payload["labels"])
        return ImageFolderData(
            dataset,
            list(meta["classes"]),
            tuple(meta["mean"]),
            tuple(meta["std"]),
            list(meta["skipped"]),
            cache_file,
            True,
        )
    except Exception as error:  # an unreadable cache is rebuilt, never trusted
        log.warning("ignoring the unreadable image cache %s (%s); decoding again", cache_file, error)
        return None


def _save_atomically(payload: dict[str, Any], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        publish_file(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
