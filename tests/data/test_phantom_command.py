"""`medgan data --all` with NB or DATA makes only the phantoms the run reads."""

import medgan.data.phantoms.__main__ as command


def _made(monkeypatch, argv):
    made = []
    monkeypatch.setattr(command, "_one", lambda name, profile, root: made.append((name, profile)) or name)
    command.main(argv)
    return made


def test_only_the_named_notebooks_phantoms(monkeypatch):
    assert _made(monkeypatch, ["--all", "--nb", "02_ct", "--nb", "05_cxr_pggan"]) == [("chest_ct", "default"),
                                                                                   ("cxr", "default")]
    assert _made(monkeypatch, ["--all", "--nb", "00_quickstart"]) == []
    assert _made(monkeypatch, ["--all", "--real-data"]) == []
    assert [n for n, _ in _made(monkeypatch, ["--all", "--profile", "rehearse"])] == list(command.NAMES)
