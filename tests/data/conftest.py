"""Shared fixtures: smoke-sized phantoms generated once per test session."""

from __future__ import annotations

import shutil

import pytest

from medgan.data.phantoms import ensure, generator


@pytest.fixture(scope="session")
def phantom_parent(tmp_path_factory):
    return tmp_path_factory.mktemp("phantoms")


@pytest.fixture(scope="session")
def make_phantom(phantom_parent):
    """make_phantom(name, **overrides) -> folder of a smoke-sized phantom (cached per options)."""
    def _make(name, **overrides):
        return ensure(name, root=phantom_parent, **{**generator(name).SMOKE, **overrides})
    return _make


@pytest.fixture
def phantom_copy(make_phantom, tmp_path):
    """A private, writable copy of a smoke phantom, for tests that damage files."""
    def _copy(name, **overrides):
        source = make_phantom(name, **overrides)
        target = tmp_path / f"{source.name}-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(source, target)
        return target
    return _copy
