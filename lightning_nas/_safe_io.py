"""Loading the files a user hands the project without running code from them.

Every checkpoint the package reads (``fit/validate/test --ckpt_path``, ``export``, ``search --ckpt_path``, the
Python API) goes through :func:`load_checkpoint`: ``torch.load(weights_only=True)``, which rebuilds tensors and
plain values only, so a file whose pickle names anything else is refused with :class:`UnsafeFileError` and never
loaded. Classes a checkpoint names (an elastic space) resolve through :func:`resolve_named_class`, which imports
nothing new outside this package. Pickled dataset files (the official CIFAR python batches) are read by
:func:`load_plain_pickle`, an unpickler that rebuilds builtins and numpy arrays only.

This module sits at the bottom of the package: it imports nothing from ``lightning_nas``.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import sys
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["UnsafeFileError", "load_checkpoint", "load_plain_pickle", "read_json", "resolve_named_class"]


class UnsafeFileError(ValueError):
    """A file holds objects beyond tensors and plain values; it was refused, not loaded."""


def load_checkpoint(path: str | Path, *, mmap: bool = True) -> Any:
    """Load a checkpoint on the CPU with ``torch.load(weights_only=True)`` (memory-mapped where the format allows).

    Args:
        path: the checkpoint file.
        mmap: map the file instead of reading it (only the entries used are read); legacy (non-zip) files fall
            back to a plain read.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnsafeFileError: the file's pickle names objects beyond tensors and plain values; nothing of it ran.
        ValueError: the file is not a readable checkpoint (truncated, not a torch file).
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint {str(source)!r} does not exist")
    try:
        try:
            return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as err:
            if not (mmap and "mmap" in str(err)):
                raise
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if _names_an_object(err):
            raise UnsafeFileError(_refusal(source, "checkpoint", _first_line(err))) from None
        raise ValueError(
            f"{str(source)!r} is not a readable checkpoint (UnpicklingError: {_first_line(err)})"
        ) from None
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{str(source)!r} is not a readable checkpoint ({type(err).__name__}: {err})") from None


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """Parse a JSON file (architectures, latency tables, tabular benchmarks): data only, nothing in it runs.

    Args:
        path: the file.
        what: what the file is, for messages (e.g. ``"latency table"``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not UTF-8 text or not valid JSON, naming it.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{what} {str(source)!r} does not exist")
    try:
        return json.loads(source.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{what} {str(source)!r} is not UTF-8 text, so not JSON ({err.reason} at byte {err.start})"
        ) from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {str(source)!r} is not valid JSON: {err}") from None


#: The globals the official CIFAR python batches need: numpy arrays (``numpy.core`` before numpy 2,
#: ``numpy._core`` after), their dtypes, and ``_codecs.encode`` (how protocol 2 spells bytes; torch's
#: ``weights_only`` unpickler allows it too); everything else in them is dicts, lists, bytes and ints.
_PLAIN_GLOBALS = frozenset(
    {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
)


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler whose only globals are numpy's array reconstruction (:data:`_PLAIN_GLOBALS`)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PLAIN_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}")
        return super().find_class(module, name)


def load_plain_pickle(path: str | Path, what: str = "file") -> Any:
    """Unpickle ``path`` allowing only builtins (dicts, lists, bytes, numbers) and numpy arrays.

    Args:
        path: the pickle file.
        what: what the file is, for messages (e.g. ``"CIFAR batch"``).

    Raises:
        UnsafeFileError: the pickle names any other object; nothing of it ran.
        ValueError: the file is not a readable pickle.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "batch"
        >>> _ = path.write_bytes(pickle.dumps({b"labels": [3, 1]}))
        >>> load_plain_pickle(path)
        {b'labels': [3, 1]}
    """
    source = Path(path)
    with source.open("rb") as stream:
        return _unpickle(stream, source, what)


def _unpickle(stream: IO[bytes] | io.BytesIO, source: Path, what: str) -> Any:
    try:
        return _PlainUnpickler(stream, encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise UnsafeFileError(_refusal(source, what, str(err))) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise ValueError(f"{str(source)!r} is not a readable {what} ({type(err).__name__}: {err})") from None


def resolve_named_class(class_path: str, source: str | os.PathLike[str]) -> type:
    """The class a file names as ``module.Class``, importing nothing new outside ``lightning_nas``.

    Importing a module runs its code, so a name read from a file may only point into this package or into a
    module the program has already imported (e.g. the user's own space, imported by their config or script).

    Raises:
        UnsafeFileError: the module is neither in ``lightning_nas`` nor already imported.
        ValueError: no such class.
    """
    module_name, _, class_name = class_path.rpartition(".")
    trusted = module_name == "lightning_nas" or module_name.startswith("lightning_nas.")
    if not module_name or not (trusted or module_name in sys.modules):
        raise UnsafeFileError(
            f"{str(source)!r} names the class {class_path!r} from a module that is not imported; a file may only "
            "name classes of lightning_nas or of modules already imported, so it was refused: import that module "
            "first (your own code) if you trust it"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"{str(source)!r} names the class {class_path!r}, which cannot be imported") from None
    if not isinstance(cls, type):
        raise ValueError(f"{str(source)!r} names {class_path!r}, which is not a class")
    return cls


def _refusal(source: Path, what: str, detail: str) -> str:
    return (
        f"{what} {str(source)!r} holds objects beyond tensors and plain values ({detail}); it is refused and was "
        "never loaded, since loading it could run code"
    )


def _names_an_object(err: BaseException) -> bool:
    # torch's restricted unpickler raises UnpicklingError both for a pickle that asks for a function or class it
    # does not allow (refused) and for bytes that are no pickle at all (unreadable)
    text = str(err).lower()
    return "operand" not in text and any(word in text for word in ("global", "reduce", "class", "allowlist"))


def _first_line(err: BaseException) -> str:
    # torch's message is a page of advice; its first sentence names the object the pickle asked for
    text = str(err).strip()
    for line in text.splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return line.split(" by default")[0].split(". Please")[0].strip().rstrip(".")
    return text.splitlines()[0] if text else type(err).__name__
