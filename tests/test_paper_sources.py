"""Every value a paper profile sets apart from the default profile names its source in a comment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medgan.config import _flatten, repo_root, resolve_profile

PARAMS = repo_root() / "params"
NOTEBOOKS = sorted(p.name for p in PARAMS.iterdir() if (p / "paper.yaml").is_file())


def line_comments(path: Path) -> dict[str, tuple[str, bool]]:
    """Dotted key -> (the ``# comment`` on its line, whether that line is a flow mapping or list)."""
    out: dict[str, tuple[str, bool]] = {}
    stack: list[tuple[int, str]] = []
    for line in path.read_text().splitlines():
        body, _, comment = line.partition(" #")
        match = re.match(r"^(\s*)([\w.-]+):", body)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        out[".".join([k for _, k in stack] + [key])] = (comment.strip(), "{" in body or "[" in body)
        stack.append((indent, key))
    return out


def uncommented(notebook: str, params_dir: Path = PARAMS) -> list[str]:
    default = _flatten(resolve_profile(notebook, "default", params_dir))
    paper = _flatten(resolve_profile(notebook, "paper", params_dir))
    comments = line_comments(params_dir / notebook / "paper.yaml")
    missing = []
    for key, value in paper.items():
        if key in default and default[key] == value:
            continue
        parts = key.split(".")
        for i in range(len(parts), 0, -1):  # the value's own line, or the flow mapping that holds it
            found = comments.get(".".join(parts[:i]))
            if found is not None:
                if not (found[0] and (i == len(parts) or found[1])):
                    missing.append(key)
                break
        else:
            missing.append(key)
    return missing


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_paper_value_that_differs_from_default_cites_its_source(notebook):
    assert uncommented(notebook) == [], f"params/{notebook}/paper.yaml: these values need a comment on their line"


def test_the_check_sees_a_value_without_a_comment(tmp_path):
    study = tmp_path / "params" / "99_toy"
    study.mkdir(parents=True)
    (study / "default.yaml").write_text("train:\n  steps: 10\n  lr: 0.1\n")
    (study / "paper.yaml").write_text("base: default\ntrain:            # section comments do not count\n"
                                      "  steps: 1000     # paper Sec. 3\n  lr: 0.2\n")
    assert uncommented("99_toy", tmp_path / "params") == ["train.lr"]
