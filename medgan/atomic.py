"""Atomic file writes and safe tensor loads.

Everything medgan writes that a later step relies on (checkpoints, feature caches, splits,
reports) goes through here: the data lands in a temporary file in the same folder and is
``os.replace``-d into place, so a crash leaves either the old file or the new one, never half.
Files get the permissions ``open()`` would give them (``0o666`` less the umask), so colleagues
on a shared server can read results; secrets pass ``mode=0o600``.
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import io
import os
import pickletools
import struct
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import IO, Any, Iterator

import torch
import torch._weights_only_unpickler as weights_only_unpickler


class UnsafeFileError(RuntimeError):
    """A file asks to run code on load (a pickled global outside the tensor allow-list).

    Attributes:
        path: the file.
        refused: what it asks to import (``"module.name"``, or the opcode that would import).
    """

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, refused: tuple[str, ...] = ()):
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.refused = tuple(refused)


class CorruptFileError(RuntimeError):
    """A file is truncated or not in the expected format."""


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it; set the strictest value meanwhile
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Args:
        path: the file to write.
        mode: its permission bits; default ``0o666`` less the umask, as ``open()`` gives. The
            temporary file is ``0o600`` until then, so a secret (``mode=0o600``) is never readable
            by others, not even for a moment.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, (0o666 & ~current_umask()) if mode is None else mode)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` atomically (and fsync it); ``mode`` as in :func:`atomic_path`."""
    with atomic_path(path, mode=mode) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, mode: int | None = None) -> Path:
    """Write UTF-8 ``text`` atomically; ``mode`` as in :func:`atomic_path`."""
    return write_bytes(path, text.encode("utf-8"), mode=mode)


def torch_save(obj: Any, path: str | os.PathLike, *, mode: int | None = None) -> Path:
    """``torch.save`` to a temporary file, then rename into place."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue(), mode=mode)


def torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a tensor file with ``weights_only=True``; never executes pickled code.

    Whether a refused file is unsafe or merely damaged is decided from what the file asks to
    import (:func:`refused_globals`, read without unpickling), never from torch's message.

    Raises:
        FileNotFoundError: the file does not exist.
        PermissionError: the file cannot be read.
        UnsafeFileError: the file asks to import a global outside the weights-only allow-list.
        CorruptFileError: the file is truncated, empty or not a torch file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, struct.error, ...
        load_error = exc
    refused = refused_globals(path)
    if refused:
        raise UnsafeFileError(
            f"{path}: refused to load — the file asks to import {', '.join(refused)} on load, outside the "
            f"weights-only allow-list, so it may have been tampered with. Only tensors, numbers, strings and "
            f"containers are accepted; if you trust its origin, re-save it as a plain state_dict.",
            path=path, refused=refused) from load_error
    raise CorruptFileError(
        f"{path}: truncated or corrupt torch file ({path.stat().st_size} bytes; "
        f"{type(load_error).__name__}: {_short(load_error)})") from load_error


def _short(exc: BaseException) -> str:
    """torch's own cause of a failed load, without its advice to load unsafely."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    text = text.strip().splitlines()[0] if text.strip() else "no detail"
    return text[:200]


# Opcodes that import by name; the weights-only unpickler only understands GLOBAL (and checks it).
_IMPORTING_OPCODES = {"STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"}
_LENGTH_PREFIX = {pickletools.TAKEN_FROM_ARGUMENT1: "<B", pickletools.TAKEN_FROM_ARGUMENT4: "<i",
                  pickletools.TAKEN_FROM_ARGUMENT4U: "<I", pickletools.TAKEN_FROM_ARGUMENT8U: "<Q"}
_LEGACY_PICKLES = 5  # magic number, protocol, system info, the object, storage keys; then raw bytes


def refused_globals(path: str | os.PathLike) -> tuple[str, ...]:
    """What a torch file would import on load that ``torch.load(weights_only=True)`` refuses.

    The pickles are walked opcode by opcode as the weights-only unpickler reads them, without
    building anything, up to where they stop parsing, so a damaged file still shows what it asks
    for. Each ``GLOBAL`` is checked against torch's own allow-list (and ``add_safe_globals``);
    an opcode that imports by another route (``STACK_GLOBAL``, ``INST``, ...) is refused as such.
    ``()``: nothing refused (the file is safe, or damaged before any import).
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head == b"PK\x03\x04":  # torch's zip format: one pickle per archive, the rest is tensor data
            streams = _zip_pickles(f)
        else:  # legacy format or a bare pickle: pickles one after another from the start
            streams = [f]
        refused: list[str] = []
        for stream in streams:
            for _ in range(_LEGACY_PICKLES if stream is f else 1):
                complete = _scan_pickle(stream, refused)
                if not complete:
                    break
    return tuple(dict.fromkeys(refused))


def _zip_pickles(f: IO[bytes]) -> list[IO[bytes]]:
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return []  # truncated before the directory: torch cannot read it either, nothing gets imported
    streams = []
    for name in archive.namelist():
        if name.endswith(".pkl"):
            data = bytearray()
            try:
                with archive.open(name) as member:
                    while chunk := member.read(1 << 16):
                        data += chunk
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
                pass  # a CRC mismatch is only noticed at the end: keep what was read
            streams.append(io.BytesIO(bytes(data)))
    return streams


def _scan_pickle(stream: IO[bytes], refused: list[str]) -> bool:
    """Append the refused imports of one pickle to ``refused``; True if it parsed up to STOP.

    Argument lengths come from the pickle protocol's opcode table (``pickletools``); for the
    opcodes the weights-only unpickler knows they are the lengths it reads, and past them the
    walk goes on (``FRAME``, ``SHORT_BINUNICODE``, ...) so a protocol-4 pickle shows its imports too.
    """
    allowed = weights_only_unpickler._get_allowed_globals()
    user_allowed = weights_only_unpickler._get_user_allowed_globals()
    blocked = getattr(weights_only_unpickler, "_blocklisted_modules", ())
    strings: list[str] = []  # the latest string arguments: what a STACK_GLOBAL would import
    try:
        while True:
            code = stream.read(1)
            if not code:
                return False
            opcode = pickletools.code2op.get(code.decode("latin-1"))
            if opcode is None:
                return False  # not a pickle opcode: garbage from here on
            arg = opcode.arg
            value = b""
            if arg is None:
                pass
            elif arg.name == "stringnl_noescape_pair":  # GLOBAL and INST: "module\nname\n"
                module = stream.readline(1 << 16)[:-1].decode("utf-8")
                name = stream.readline(1 << 16)[:-1].decode("utf-8")
                if (module, name) in _compat_pickle.NAME_MAPPING:  # as the unpickler maps Python 2 names
                    module, name = _compat_pickle.NAME_MAPPING[(module, name)]
                elif module in _compat_pickle.IMPORT_MAPPING:
                    module = _compat_pickle.IMPORT_MAPPING[module]
                full = f"{module}.{name}"
                if (opcode.name != "GLOBAL" or module in blocked
                        or (full not in allowed and full not in user_allowed)):
                    refused.append(full)
            elif arg.n == pickletools.UP_TO_NEWLINE:
                value = stream.readline(1 << 16)
            elif arg.n >= 0:
                value = stream.read(arg.n)
                if len(value) < arg.n:
                    return False
            else:
                fmt = _LENGTH_PREFIX[arg.n]
                (length,) = struct.unpack(fmt, stream.read(struct.calcsize(fmt)))
                if length < 0 or length > 1 << 16:  # long strings are tensor-free text: step over them
                    if not _skip(stream, length):
                        return False
                else:
                    value = stream.read(length)
                    if len(value) < length:
                        return False
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                               "SHORT_BINSTRING", "BINSTRING", "STRING"):
                strings = [*strings[-1:], value.decode("utf-8", "replace").strip().strip("'\"")]
            elif opcode.name == "STACK_GLOBAL":
                refused.append(".".join(strings[-2:]) if len(strings) == 2 else "a STACK_GLOBAL import")
            elif opcode.name in _IMPORTING_OPCODES and opcode.name != "INST":
                refused.append(f"an {opcode.name} import")
            elif opcode.name == "STOP":
                return True
    except (struct.error, UnicodeDecodeError):
        return False  # cut short inside an argument


def _skip(stream: IO[bytes], n: int) -> bool:
    """Step over ``n`` argument bytes (without reading a huge length a damaged file may claim)."""
    start = stream.tell()
    end = stream.seek(0, os.SEEK_END)
    stream.seek(min(start + n, end))
    return start + n <= end
