"""Shared pieces of every loader: the error type, pseudonymous subject keys and the site salt,
the privacy boundary every loader's constructor runs inside (paths relative to the data root,
subject folders replaced by their keys), skip logging, and an in-memory Dataset over decoded arrays.

Privacy, in one place:

- **Subject keys** are ``"s-"`` + 16 hex digits (64 bits) of SHA-256(salt, raw id).
- **Salt.** ``salt=`` given to a loader wins, then ``$MEDGAN_SUBJECT_SALT``. A generated phantom
  (its root holds :data:`PHANTOM_MANIFEST`, written by ``medgan.data.phantoms.ensure``) uses the
  public :data:`DEFAULT_SALT`, so its truth files and tests can recompute keys. Any other root is
  real data: a random per-site salt (``secrets.token_hex(32)``) is made once, kept owner-only
  (mode 0600) in ``<work dir>/subject-salt`` (:func:`site_salt`), reused, never written into a
  report, and its creation is logged once. Delete it and every real-data key (and split) changes.
- **Paths.** Inside :func:`data_problems` (every loader's ``__init__`` runs in it, through
  :func:`reads_data_root`) every :class:`DataError` message, every ``BadInputLog.skipped`` entry
  and every ``medgan.data`` log line names files relative to the data root (the root itself as
  ``<data root>``), with each subject-level folder (TCIA's ``LUNG1-001``, a PACS export's MRN
  folder) replaced by ``subject_key(folder name)`` — the patient's own key where the folder is
  named by its PatientID. Raw patient IDs read inside the boundary are replaced by their keys too.
  An ``OSError`` about a file under the root becomes :class:`DataAccessError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import inspect
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medgan.config import work_dir

logger = logging.getLogger("medgan.data")

# Public salt: phantoms (and code outside any data root) only. Real data gets a per-site salt.
DEFAULT_SALT = "medgan-subject-v1"
SALT_ENV = "MEDGAN_SUBJECT_SALT"
SALT_FILE = "subject-salt"  # in medgan.config.work_dir(), mode 0600
KEY_HEX_DIGITS = 16  # 64-bit keys: "s-" + 16 hex digits
# Written by medgan.data.phantoms.ensure into every phantom root (= phantoms.MANIFEST; a test checks).
PHANTOM_MANIFEST = "phantom.json"
ROOT_PLACEHOLDER = "<data root>"
# subject_key("<namespace>:<raw>") namespaces whose raw part is a patient identifier (scrubbed from messages)
PATIENT_ID_NAMESPACES = frozenset({"cxr", "pet"})
# Never subject folders: the phantoms' ground truth beside the real layout.
NOT_SUBJECT_FOLDERS = frozenset({"truth"})
# Shorter names are replaced only as path components, not as words in free text ("1", "CT").
MIN_TOKEN_CHARS = 4


class DataError(ValueError):
    """Bad input data. The message always names the file (or folder) and the field at fault."""


class DataAccessError(DataError):
    """A file or folder under the data root could not be opened or listed (permissions, I/O)."""


_ACTIVE: contextvars.ContextVar["DataRoot | None"] = contextvars.ContextVar("medgan_data_root", default=None)


def _digest_key(raw_id: str, salt: str) -> str:
    digest = hashlib.sha256(f"{salt}\x00{raw_id}".encode("utf-8")).hexdigest()
    return f"s-{digest[:KEY_HEX_DIGITS]}"


def subject_key(raw_id: str, *, salt: str | None = None) -> str:
    """Pseudonymous subject key: ``"s-"`` + 16 hex digits of SHA-256(salt, raw_id).

    ``salt`` defaults to the salt of the data root being read (see the module docstring); outside
    any loader it is ``$MEDGAN_SUBJECT_SALT`` or the public :data:`DEFAULT_SALT`. The raw id (e.g.
    a DICOM PatientID) never leaves this function; inside a loader it is remembered, so that a
    message naming it is rewritten to the key.
    """
    active = _ACTIVE.get()
    if salt is None:
        salt = active.salt if active is not None else (os.environ.get(SALT_ENV) or DEFAULT_SALT)
    key = _digest_key(str(raw_id), salt)
    if active is not None:
        active.remember(str(raw_id), key)
    return key


def site_salt_path() -> Path:
    return work_dir() / SALT_FILE


def site_salt() -> str:
    """This site's random subject salt, created once (mode 0600) in the work directory."""
    path = site_salt_path()
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        text = _create_site_salt(path)
    except OSError as exc:
        raise DataError(f"{path}: site subject salt unreadable ({exc.strerror}); set ${SALT_ENV} "
                        "or fix the file's permissions") from None
    if not text:
        raise DataError(f"{path}: site subject salt is empty; restore it from a backup (deleting it "
                        f"changes every subject key) or set ${SALT_ENV}")
    try:
        if path.stat().st_mode & 0o077:  # a secret: owner-only whatever the umask or a copy did
            os.chmod(path, 0o600)
    except OSError:
        pass
    return text


def _create_site_salt(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(32)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".subject-salt-")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(salt + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # atomic and never replaces: two first runs agree on one salt
        except FileExistsError:
            return path.read_text(encoding="utf-8").strip()
        except OSError:  # no hard links on this file system: exclusive create instead
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return path.read_text(encoding="utf-8").strip()
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(salt + "\n")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    logger.warning("created a random per-site subject salt in %s (owner-only). Subject keys of real data "
                   "depend on it: keep it, back it up, never share it (or set $%s)", path, SALT_ENV)
    return salt


def is_phantom(root: str | os.PathLike) -> bool:
    """True when ``root`` is a phantom generated by ``medgan.data.phantoms`` (its manifest is there)."""
    try:
        info = json.loads((Path(root) / PHANTOM_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "name" in info and "version" in info


def resolve_salt(root: str | os.PathLike, salt: str | None = None) -> tuple[str, str]:
    """``(salt, source)`` for reading ``root``; source is "given", the env name, "phantom" or "site"."""
    if salt is not None:
        return salt, "given"
    if os.environ.get(SALT_ENV):
        return os.environ[SALT_ENV], SALT_ENV
    if is_phantom(root):
        return DEFAULT_SALT, "phantom"
    return site_salt(), "site"


_TOKEN = re.compile(r"[\w-]+")
# a root form must stand alone: not preceded by a path character
_BEFORE = r"(?<![\w.~/-])"
_REST = r"(?P<rest>(?:/[^\s'\"<>|:;,()\[\]{}]*)*)"


class DataRoot:
    """One data root being read: its salt and the scrubber of everything said about its files.

    Args:
        root: the dataset folder.
        subject_dirs: glob patterns (relative to ``root``) of the subject-level folders; the first
            pattern matching any folder is used (e.g. ``("NSCLC-Radiomics/*", "*")``).
        salt: explicit salt (else see :func:`resolve_salt`; resolved on first use).
    """

    def __init__(self, root: str | os.PathLike, *, subject_dirs: Sequence[str] = (), salt: str | None = None):
        self.root = Path(root)
        self.subject_dirs = tuple(subject_dirs)
        self._salt = salt
        self._salt_source: str | None = "given" if salt is not None else None
        self._folders: dict[tuple[str, ...], str] | None = None
        self._names: dict[str, str] = {}  # raw id or folder name -> key (free-text replacement)
        forms = set()
        for form in (self.root, self.root.absolute(), self.root.resolve()):
            text = str(form).rstrip("/")
            if text and text != ".":
                forms.add(text)
        patterns = []
        for form in sorted(forms, key=len, reverse=True):
            # a relative root only where it opens a path, so the word "data" is left alone
            # (an absolute one also right after a letter: "\\n/data/..." in JSON text)
            if os.path.isabs(form):
                patterns.append(r"(?<![.~])" + re.escape(form) + r"(?![\w-])(?!\.[\w-])" + _REST)
            else:
                patterns.append(_BEFORE + re.escape(form) + r"(?=/)" + _REST)
        self._root_pattern = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None

    # -- salt ---------------------------------------------------------------------------------
    @property
    def salt(self) -> str:
        if self._salt is None:
            self._salt, self._salt_source = resolve_salt(self.root)
        return self._salt

    @property
    def salt_source(self) -> str:
        self.salt
        return self._salt_source  # type: ignore[return-value]

    @property
    def phantom(self) -> bool:
        return is_phantom(self.root)

    def remember(self, raw_id: str, key: str) -> None:
        """Note a raw id seen by :func:`subject_key`, so messages naming it show the key."""
        match = re.match(r"^([a-z][a-z0-9_]*):(.*)$", raw_id)
        if match:
            if match.group(1) not in PATIENT_ID_NAMESPACES:
                return
            raw_id = match.group(2)
        if len(raw_id) >= MIN_TOKEN_CHARS:
            self._names[raw_id] = key

    # -- subject folders -----------------------------------------------------------------------
    def _subject_folders(self) -> dict[tuple[str, ...], str]:
        if self._folders is None:
            self._folders = {}
            fixed = {part for pattern in self.subject_dirs for part in Path(pattern).parts if not re.search(r"[*?\[]", part)}
            for pattern in self.subject_dirs:
                try:
                    found = [p for p in self.root.glob(pattern) if p.is_dir() and not p.name.startswith(".")
                             and p.name not in NOT_SUBJECT_FOLDERS and p.name not in fixed]
                except OSError:
                    found = []
                if found:
                    for p in found:
                        key = _digest_key(p.name, self.salt)
                        self._folders[p.relative_to(self.root).parts] = key
                        if len(p.name) >= MIN_TOKEN_CHARS:
                            self._names[p.name] = key
                    break
        return self._folders

    def relative(self, parts: Sequence[str]) -> str:
        """Path parts under the root -> the scrubbed relative path (subject folders as keys)."""
        folders = self._subject_folders()
        out = list(parts)
        for i in range(len(out)):
            key = folders.get(tuple(parts[: i + 1]))
            if key is not None:
                out[i] = key
        return "/".join(out) if out else ROOT_PLACEHOLDER

    # -- scrubbing -----------------------------------------------------------------------------
    def scrub(self, text: Any, *, paths: str = "relative", placeholder: str = ROOT_PLACEHOLDER) -> str:
        """``text`` with every path under the root made relative and every subject folder or raw id
        replaced by its key. ``paths="basename"`` keeps only ``<data root>/…/<file name>`` (for
        text whose layout is unknown, e.g. the report runner)."""
        text = str(text)
        self._subject_folders()  # also fills the names replaced in free text
        if self._root_pattern is not None:
            def rewrite(match: re.Match) -> str:
                parts = [p for p in (match.group("rest") or "").split("/") if p]
                if not parts:
                    return placeholder
                if paths == "basename":
                    return f"{placeholder}/…/{parts[-1]}" if len(parts) > 1 else f"{placeholder}/{parts[0]}"
                return self.relative(parts)
            text = self._root_pattern.sub(rewrite, text)
        if self._names:
            names = self._names
            text = _TOKEN.sub(lambda m: names.get(m.group(0), m.group(0)), text)
            for name, key in names.items():  # names a token cannot hold ("Doe John", "J.Doe")
                if not _TOKEN.fullmatch(name) and name in text:
                    text = text.replace(name, key)
        return text

    def leaks(self, text: Any) -> bool:
        return self.scrub(text) != str(text)


def _scrub_exception(exc: BaseException, data_root: DataRoot) -> None:
    """Rewrite ``exc`` and its chain in place; cut the chain where an exception cannot be rewritten."""
    current, seen = exc, set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            for attr in ("filename", "filename2", "strerror"):
                value = getattr(current, attr, None)
                if isinstance(value, (str, os.PathLike)):
                    with contextlib.suppress(AttributeError, TypeError):
                        setattr(current, attr, data_root.scrub(os.fspath(value)))
        with contextlib.suppress(AttributeError, TypeError):
            current.args = tuple(data_root.scrub(a) if isinstance(a, (str, os.PathLike)) else a for a in current.args)
        following = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if following is not None:
            _scrub_args_only(following, data_root)
            try:
                still = data_root.leaks(following)
            except Exception:  # an exception whose str() fails: drop it from the chain
                still = True
            if still:
                current.__cause__, current.__context__, current.__suppress_context__ = None, None, True
                return
        current = following


def _scrub_args_only(exc: BaseException, data_root: DataRoot) -> None:
    if isinstance(exc, OSError):
        for attr in ("filename", "filename2", "strerror"):
            value = getattr(exc, attr, None)
            if isinstance(value, (str, os.PathLike)):
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(exc, attr, data_root.scrub(os.fspath(value)))
    with contextlib.suppress(AttributeError, TypeError):
        exc.args = tuple(data_root.scrub(a) if isinstance(a, (str, os.PathLike)) else a for a in exc.args)


class _ScrubLogFilter(logging.Filter):
    """Rewrites ``medgan.data`` log lines emitted while a data root is being read."""

    def filter(self, record: logging.LogRecord) -> bool:
        active = _ACTIVE.get()
        if active is not None:
            try:
                record.msg, record.args = active.scrub(record.getMessage()), None
            except Exception:  # never lose a log line to the scrubber; drop its arguments instead
                record.args = None
        return True


_LOG_FILTER = _ScrubLogFilter()
logger.addFilter(_LOG_FILTER)


def _filter_data_loggers() -> None:
    # child loggers ("medgan.data.x") do not pass through the parent's filters
    for name, item in list(logging.root.manager.loggerDict.items()):
        if name.startswith("medgan.data.") and isinstance(item, logging.Logger) and _LOG_FILTER not in item.filters:
            item.addFilter(_LOG_FILTER)


@contextlib.contextmanager
def data_problems(root: str | os.PathLike | DataRoot, *, subject_dirs: Sequence[str] = (),
                  salt: str | None = None) -> Iterator[DataRoot]:
    """Read the data root ``root`` inside the privacy boundary (see the module docstring).

    Resolves the salt (creating the site salt for real data), makes :func:`subject_key` use it,
    scrubs every exception, skip and ``medgan.data`` log line leaving the block, and turns an
    ``OSError`` about a file under the root into :class:`DataAccessError` and a pandas parse error
    into :class:`DataError`.
    """
    data_root = root if isinstance(root, DataRoot) else DataRoot(root, subject_dirs=subject_dirs, salt=salt)
    data_root.salt  # resolve (and, for real data, create and log) the salt before anything is keyed
    _filter_data_loggers()
    token = _ACTIVE.set(data_root)
    try:
        yield data_root
    except DataError as exc:
        _scrub_exception(exc, data_root)
        raise
    except OSError as exc:
        if not data_root.leaks(f"{exc.filename} {exc.filename2} {exc}"):
            raise  # not about the data (e.g. the work directory): not a data problem
        where = exc.filename if exc.filename is not None else data_root.root
        cause = exc.strerror or type(exc).__name__
        _scrub_exception(exc, data_root)
        raise DataAccessError(data_root.scrub(f"{where}: cannot read ({type(exc).__name__}: {cause})")) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        _scrub_exception(exc, data_root)
        raise DataError(data_root.scrub(f"{data_root.root}: a file could not be parsed "
                                        f"({type(exc).__name__}: {exc})")) from exc
    except Exception as exc:  # programming errors keep their type, but carry no data path
        _scrub_exception(exc, data_root)
        raise
    finally:
        _ACTIVE.reset(token)


def reads_data_root(*, subject_dirs: Sequence[str] = ()) -> Callable:
    """Decorator for a loader's ``__init__(self, root, ...)``: runs it inside :func:`data_problems`.

    ``subject_dirs`` are glob patterns relative to ``root`` of the subject-level folders; a pattern
    may name the constructor's arguments (``"{image_dir}/*"``). The loader's ``salt=`` argument,
    when it has one, is passed on.
    """
    def decorate(init: Callable) -> Callable:
        signature = inspect.signature(init)

        @functools.wraps(init)
        def wrapper(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            root = arguments.get("root")
            if root is None:
                return init(self, *args, **kwargs)
            patterns = [p.format(**arguments) for p in subject_dirs]
            with data_problems(root, subject_dirs=patterns, salt=arguments.get("salt")):
                return init(self, *args, **kwargs)
        return wrapper
    return decorate


class _ScrubbedList(list):
    """``BadInputLog.skipped``: every ``(where, reason)`` appended is scrubbed, however it is appended."""

    def __init__(self, log: "BadInputLog"):
        super().__init__()
        self._log = log

    def _clean(self, entry):
        return tuple(self._log.scrub(str(x)) for x in entry)

    def append(self, entry) -> None:
        super().append(self._clean(entry))

    def extend(self, entries) -> None:
        super().extend(self._clean(e) for e in entries)

    def insert(self, index, entry) -> None:
        super().insert(index, self._clean(entry))

    def __iadd__(self, entries):
        self.extend(entries)
        return self

    def __reduce__(self):  # pickles (DataLoader workers) as a plain list
        return (list, (list(self),))


class BadInputLog:
    """Collects bad-input problems for one loader.

    With ``skip_bad=False`` (default) :meth:`problem` raises :class:`DataError` at once; with
    ``skip_bad=True`` it logs a warning, records ``(file, reason)`` in :attr:`skipped` and
    returns, so the caller skips the item. Loaders report the count, never shrink silently.
    Messages, log lines and :attr:`skipped` are scrubbed by ``root`` (a :class:`DataRoot` or a
    folder), else by the data root being read (:func:`data_problems`): relative paths, subject
    folders as keys.
    """

    def __init__(self, *, skip_bad: bool = False, name: str = "data",
                 root: str | os.PathLike | DataRoot | None = None, subject_dirs: Sequence[str] = ()):
        self.skip_bad = skip_bad
        self.name = name
        self.root = root if root is None or isinstance(root, DataRoot) else DataRoot(root, subject_dirs=subject_dirs)
        self.skipped: list[tuple[str, str]] = _ScrubbedList(self)

    def scrub(self, text: Any) -> str:
        data_root = self.root if self.root is not None else _ACTIVE.get()
        return data_root.scrub(text) if data_root is not None else str(text)

    def problem(self, path: str | os.PathLike, reason: str) -> None:
        message = self.scrub(f"{path}: {reason}")
        if not self.skip_bad:
            raise DataError(message)
        self.skipped.append((str(path), reason))
        logger.warning("%s: skipped %s", self.name, message)

    def reject(self, error: DataError, where: str | os.PathLike) -> None:
        """Re-raise ``error`` (scrubbed), or (``skip_bad``) log it and record ``(where, message)``.

        ``error``'s message already names the file and field; ``where`` is the item skipped
        (a slice, a site, a patient folder).
        """
        data_root = self.root if self.root is not None else _ACTIVE.get()
        if data_root is not None:
            _scrub_exception(error, data_root)
        if not self.skip_bad:
            raise error
        self.skipped.append((str(where), str(error)))
        logger.warning("%s: skipped %s (%s)", self.name, self.scrub(where), self.scrub(error))

    @property
    def count(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        return f"{self.name}: {self.count} item(s) skipped as bad input"


def files_digest(files: Sequence[str | os.PathLike], *settings: Any) -> str:
    """A cache key from the files' bytes (blake2b), their names and ``settings``: a re-export copied
    with preserved sizes and times still changes it. An unreadable file is a :class:`DataAccessError`."""
    digest = hashlib.blake2b(repr(settings).encode(), digest_size=16)
    for path in files:
        digest.update(f"{path}\0".encode())
        try:
            with open(path, "rb") as stream:
                digest.update(hashlib.file_digest(stream, "blake2b").digest())
        except OSError as exc:
            raise DataAccessError(f"{path}: unreadable ({type(exc).__name__}: {exc.strerror})") from exc
    return digest.hexdigest()


def read_csv_text(path: Path, what: str) -> pd.DataFrame:
    """A CSV with every column as text (IDs keep leading zeros; blanks stay ""), as a DataFrame.

    Read as UTF-8 (a BOM is allowed); a file that is not UTF-8 is read as Latin-1 with a warning.
    A missing, 0-byte, header-less or malformed file raises :class:`DataError` naming it.
    """
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: {what} is empty (0 bytes)")
    options = dict(dtype=str, keep_default_na=False)
    try:
        try:
            return pd.read_csv(path, encoding="utf-8-sig", **options)
        except UnicodeDecodeError as exc:
            logger.warning("%s: %s is not UTF-8 (byte 0x%02x at offset %d); read as Latin-1",
                           path, what, exc.object[exc.start], exc.start)
            return pd.read_csv(path, encoding="latin-1", **options)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: {what} has no header row") from exc
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise DataError(f"{path}: {what} unreadable as CSV ({type(exc).__name__}: {exc})") from exc


def check_finite(array: np.ndarray, path: str | os.PathLike, field: str) -> None:
    """Raise :class:`DataError` if ``array`` has NaN/Inf, naming the file and field."""
    if not np.all(np.isfinite(array)):
        n_bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise DataError(f"{path}: {field} has {n_bad} NaN/Inf value(s)")


def to_image_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W) or (C, H, W) float array already in [-1, 1] -> float32 tensor (C, H, W)."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    return torch.from_numpy(np.ascontiguousarray(array))


class _StoredRecords(Sequence):
    """The records of an item store, read from disk on access (``records[i]``, slices, loops)."""

    def __init__(self, store):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.store.read(i) for i in range(*index.indices(len(self)))]
        return self.store.read(index if index >= 0 else len(self) + index)


def _array_keys(record: Mapping[str, Any]) -> set[str]:
    return {k for k, v in record.items() if isinstance(v, np.ndarray)}


class ItemListDataset(Dataset):
    """Dataset over a list of items, each a dict of numpy arrays and scalars.

    ``records`` is either a list of decoded records (small in-memory sets: toy shapes, subsets)
    or an :class:`medgan.data.item_store.ItemStore` (the loaders: pixels stay on disk and are
    read per item, so memory does not grow with the dataset). Records hold ``image`` (C,H,W)
    float32 in [-1,1], ``label``, ``subject``, ``meta`` and optionally ``target``/``mask``/``truth``.
    :attr:`rows` holds every record's non-array fields, for loops over labels and metadata
    that must not read pixels. ``transform`` (optional) maps the finished item dict to a new
    dict (augmentation).
    """

    def __init__(self, records, *, transform: Callable | None = None):
        self.transform = transform
        if hasattr(records, "read") and hasattr(records, "rows"):  # an ItemStore
            self.store = records
            self.records = _StoredRecords(records)
            self.rows = records.rows
        else:
            self.store = None
            self.records = list(records)
            self.rows = [{k: v for k, v in r.items() if not isinstance(v, np.ndarray)} for r in self.records]
        if self.rows:
            keys = set(self.rows[0]["meta"])
            for row in self.rows:
                if set(row["meta"]) != keys:  # the contract: same meta keys for every item
                    raise AssertionError(f"meta keys differ: {sorted(keys)} vs {sorted(row['meta'])}")

    def __len__(self) -> int:
        return len(self.records)

    def fingerprint(self) -> str:
        """Content hash of the records (arrays by bytes; labels, subjects, meta by value).

        The engine's dataset identity. An item store's is the digest it computed while it was
        built, so this costs nothing at any dataset size.
        """
        if getattr(self, "_fingerprint", None) is None:
            h = hashlib.sha256()
            transform = self.transform
            h.update(f"transform={getattr(transform, '__qualname__', type(transform).__name__)}".encode())
            if self.store is not None:
                h.update(f"store={self.store.content}".encode())
            else:
                for record in self.records:
                    for key in sorted(record):
                        value = record[key]
                        h.update(key.encode())
                        if isinstance(value, np.ndarray):
                            h.update(f"{value.dtype}{value.shape}".encode())
                            h.update(np.ascontiguousarray(value).reshape(-1).view(np.uint8).data)
                        else:
                            h.update(repr(value).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    @property
    def subjects(self) -> list[str]:
        """Sorted distinct subject keys present in this dataset."""
        return sorted({r["subject"] for r in self.rows})

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = record_to_item(self.records[index])
        return self.transform(item) if self.transform else item


def record_to_item(record: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded record as a training item: image-like arrays as float32 tensors."""
    item: dict[str, Any] = {}
    for key, value in record.items():
        if key in ("image", "target", "mask", "truth"):
            item[key] = to_image_tensor(value)
        elif key == "label" and isinstance(value, np.ndarray):
            item[key] = torch.from_numpy(value.astype(np.float32))
        elif key == "meta":
            item[key] = dict(value)
        else:
            item[key] = value
    return item


def iter_batches(dataset: Dataset, key: str = "image", *, batch_size: int = 64,
                 indices: Sequence[int] | None = None) -> Iterator[torch.Tensor]:
    """``key`` of the dataset's items (or of ``indices``), stacked ``batch_size`` at a time: the
    streaming form of :func:`stack_items`, for evaluations over sets too large for memory."""
    order = range(len(dataset)) if indices is None else indices
    batch: list[torch.Tensor] = []
    for i in order:
        batch.append(dataset[i][key])
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def stack_items(dataset: Dataset, key: str = "image") -> torch.Tensor:
    """Every item's ``key`` tensor of a dataset, stacked: (N, C, H, W) for images."""
    return torch.stack([dataset[i][key] for i in range(len(dataset))])


def subjects_of(dataset: Dataset) -> list[str]:
    """The pseudonymous subject key of every item, in order (from the rows: no pixels are read)."""
    rows = getattr(dataset, "rows", None)
    if rows is not None:
        return [r["subject"] for r in rows]
    return [dataset[i]["subject"] for i in range(len(dataset))]


def filter_by_split(subjects: Sequence[str], split_map: dict[str, str] | None,
                    split: str | None) -> set[str]:
    """Subjects kept for ``split`` (all when ``split`` is None)."""
    if split is None:
        return set(subjects)
    if split_map is None:
        raise DataError(f"split={split!r} requested but no split mapping was given")
    names = set(split_map.values())
    if split not in names:
        raise DataError(f"split={split!r} not in the split file (has {sorted(names)})")
    return {s for s in subjects if split_map.get(s) == split}


def require_dir(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: {what} folder not found")
    return path
