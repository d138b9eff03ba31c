"""Networks that can be rebuilt from a description: their class name and constructor arguments.

``@portable`` records the arguments each instance was built with (``module.init_args``), so an
exported generator's ``model.json`` says exactly how to build it again, with no study code.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn

PORTABLE: dict[str, type[nn.Module]] = {}


def portable(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: instances keep their constructor arguments in ``init_args``."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def recording_init(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(self, *args, **kwargs)
        if type(self) is cls:  # a subclass records its own arguments
            self.init_args = {k: v for k, v in bound.arguments.items() if k != "self"}

    cls.__init__ = recording_init
    PORTABLE[_name(cls)] = cls
    return cls


def _name(cls: type) -> str:
    """``<module>.<class>`` (``pggan.Generator``): two families may both call a class Generator."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__qualname__}"


def describe(module: nn.Module) -> dict[str, Any]:
    """``{"class": name, "args": constructor arguments}`` of a ``@portable`` network."""
    name = _name(type(module))
    if PORTABLE.get(name) is not type(module) or not hasattr(module, "init_args"):
        raise TypeError(f"{name} is not a portable network (decorate its class with @portable)")
    return {"class": name, "args": dict(module.init_args)}


def rebuild(description: dict[str, Any]) -> nn.Module:
    """A freshly initialised network of ``description`` (see :func:`describe`)."""
    name = description["class"]
    if name not in PORTABLE:
        raise ValueError(f"unknown network class {name!r}; known: {', '.join(sorted(PORTABLE))}")
    return PORTABLE[name](**description["args"])
