import io
import os
import pickle
import stat

import pytest
import torch

from medgan import atomic
from medgan.atomic import CorruptFileError, UnsafeFileError, refused_globals, torch_load


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_respect_the_umask(tmp_path, umask):
    expected = 0o666 & ~umask
    atomic.write_bytes(tmp_path / "a.bin", b"x")
    atomic.write_text(tmp_path / "sub" / "b.json", "{}")
    atomic.torch_save({"x": torch.ones(2)}, tmp_path / "c.pt")
    with atomic.atomic_path(tmp_path / "d.png") as tmp:
        tmp.write_bytes(b"png")
    for name in ("a.bin", "sub/b.json", "c.pt", "d.png"):
        assert _mode(tmp_path / name) == expected, name
    assert atomic.current_umask() == umask


def test_replacing_a_file_gives_the_umask_mode_not_the_old_one(tmp_path, umask):
    path = tmp_path / "index.json"
    path.write_text("old")
    os.chmod(path, 0o600)
    atomic.write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o666 & ~umask


def test_secrets_are_owner_only_whatever_the_umask(tmp_path, umask):
    salt = atomic.write_bytes(tmp_path / "salt", b"secret", mode=0o600)
    assert _mode(salt) == 0o600
    assert _mode(atomic.write_text(tmp_path / "salt.txt", "secret", mode=0o600)) == 0o600


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with atomic.atomic_path(tmp_path / "x.json"):
            1 / 0
    assert list(tmp_path.iterdir()) == []


class _CreatesMarker:
    """Unpickling this runs code: ``open(marker, "w")`` creates the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _RunsShell:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _malicious_files(tmp_path):
    """The same payload in each container torch.load accepts (zip, legacy, bare pickles)."""
    marker = tmp_path / "pwned"
    payload = {"format": "medgan-checkpoint-v1", "step": 1, "weights": torch.ones(2), "x": _CreatesMarker(marker)}
    files = {}
    files["zip"] = tmp_path / "zip.pt"
    torch.save(payload, files["zip"])
    files["legacy"] = tmp_path / "legacy.pt"
    torch.save(payload, files["legacy"], _use_new_zipfile_serialization=False)
    files["pickle2"] = tmp_path / "pickle2.pt"
    files["pickle2"].write_bytes(pickle.dumps(_CreatesMarker(marker), protocol=2))
    files["pickle5"] = tmp_path / "pickle5.pt"  # STACK_GLOBAL, which the weights-only unpickler does not parse
    files["pickle5"].write_bytes(pickle.dumps(_CreatesMarker(marker), protocol=5))
    files["os.system"] = tmp_path / "system.pt"
    torch.save({"x": _RunsShell()}, files["os.system"])
    return marker, files


def test_files_that_would_run_code_are_unsafe_and_never_run(tmp_path):
    marker, files = _malicious_files(tmp_path)
    for kind, path in files.items():
        with pytest.raises(UnsafeFileError, match="refused to load") as info:
            torch_load(path)
        assert str(path) in str(info.value) and info.value.path == path, kind
        assert info.value.refused, kind
    assert not marker.exists(), "loading must never execute the pickled code"
    assert "open" in " ".join(refused_globals(files["zip"]))
    assert any("system" in name for name in refused_globals(files["os.system"]))


def test_unsafety_does_not_depend_on_torchs_wording(tmp_path, monkeypatch):
    """torch rewords its refusal between releases; the verdict comes from the file itself."""
    marker, files = _malicious_files(tmp_path)
    good = tmp_path / "good.pt"
    torch.save({"x": torch.ones(3)}, good)
    half = tmp_path / "half.pt"
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    def reworded(*args, **kwargs):
        raise pickle.UnpicklingError("Weights-only load refused (message in a future wording)")

    monkeypatch.setattr(atomic.torch, "load", reworded)
    with pytest.raises(UnsafeFileError):
        torch_load(files["zip"])
    with pytest.raises(CorruptFileError):
        torch_load(half)
    assert not marker.exists()


def test_a_truncated_malicious_file_is_still_unsafe(tmp_path):
    _, files = _malicious_files(tmp_path)
    data = files["pickle2"].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[:-3])  # the import is in, the call and STOP are not
    with pytest.raises(UnsafeFileError):
        torch_load(cut)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 100, -1])
def test_short_or_cut_files_are_corrupt(tmp_path, size):
    good = tmp_path / "good.pt"
    torch.save({"x": torch.arange(10.0)}, good)
    data = good.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[:size])
    with pytest.raises(CorruptFileError, match="bad.pt"):
        torch_load(bad)
    assert refused_globals(bad) == ()


@pytest.mark.parametrize("content", [b"J\x01", b"not a checkpoint", b"\x80\x02}q\x00.", bytes(range(256)) * 4,
                                     b"PK\x03\x04" + b"\x00" * 60])
def test_garbage_is_corrupt_with_a_medgan_error(tmp_path, content):
    """struct.error, EOFError, RuntimeError from torch all become CorruptFileError naming the file."""
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(content)
    with pytest.raises(CorruptFileError, match="garbage.pt"):
        torch_load(bad)


def test_good_files_load_in_every_container(tmp_path):
    obj = {"x": torch.arange(4.0), "n": 3, "s": "text", "l": [1.5, None]}
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    for legacy in (False, True):
        path = tmp_path / f"good{legacy}.pt"
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        loaded = torch_load(path)
        assert torch.equal(loaded["x"], obj["x"]) and loaded["s"] == "text"
        assert refused_globals(path) == ()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        torch_load(tmp_path / "nope.pt")
