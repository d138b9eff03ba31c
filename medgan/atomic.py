"""Atomic file writes and safe tensor loads.

Everything medgan writes that a later step relies on (checkpoints, feature caches, splits,
reports) goes through here: the data lands in a temporary file in the same folder and is
``os.replace``-d into place, so a crash leaves either the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch


class UnsafeFileError(RuntimeError):
    """A file asks to run code on load (a pickled global outside the tensor allow-list)."""


class CorruptFileError(RuntimeError):
    """A file is truncated or not in the expected format."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file, then rename into place."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())


def torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a tensor file with ``weights_only=True``; never executes pickled code.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafeFileError: the file carries pickled code or objects outside the allow-list.
        CorruptFileError: the file is truncated or not a torch file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        # weights_only names the offending global ("Unsupported global: GLOBAL os.system");
        # garbage bytes fail on an opcode instead ("Unsupported operand").
        if "Unsupported global" in message or "safe_globals" in message:
            detail = next((line.strip() for line in message.splitlines() if "GLOBAL" in line), "")
            raise UnsafeFileError(
                f"{path}: refused to load — the file carries pickled code or objects "
                f"({detail or 'a global outside the weights-only allow-list'}). Only tensors, numbers, "
                f"strings and containers are accepted; re-save it from trusted code as a plain state_dict."
            ) from exc
        raise CorruptFileError(f"{path}: truncated or corrupt torch file (not a weights-only pickle)") from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CorruptFileError(
            f"{path}: truncated or corrupt torch file ({type(exc).__name__}: {exc})"
        ) from exc
