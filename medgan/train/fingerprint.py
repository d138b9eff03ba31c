"""What makes two training runs "the same run": the fingerprint the engine keys run folders by.

The engine computes it from everything it is given that changes the weights, so no study has
to hand-build it:

- the seed, the global batch size and the precision;
- the step's own configuration (:func:`step_config`): each network's class, its printed
  architecture and a hash of its initial weights (which also catches a builder that forgot to
  seed), each optimiser's settings, and every plain setting the step keeps (loss weights,
  schedules, pool sizes, ...);
- the dataset's identity (:func:`dataset_identity`): its length and a content fingerprint the
  dataset provides (``dataset.fingerprint()``), else a hash of every item;
- the total step count, only when the step's schedule depends on it
  (``TrainingStep.schedule_uses_total_steps``: CycleGAN's linear decay, PGGAN's growth, ...);
- anything a job adds (``extra``).

The number of processes is deliberately left out: a ``torchrun`` job and the notebook that
reloads its result must find the same folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset


def digest(value: Any) -> str:
    """SHA-256 of a JSON-able value (keys sorted), as hex."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def tensor_digest(value: torch.Tensor | np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (first 16 hex digits)."""
    array = value.detach().cpu().contiguous().numpy() if torch.is_tensor(value) else np.ascontiguousarray(value)
    h = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
    h.update(array.reshape(-1).view(np.uint8).data if array.size else b"")
    return h.hexdigest()[:16]


def describe(value: Any, depth: int = 0) -> Any:
    """A JSON-able description of a setting: numbers and strings as they are, arrays by hash."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        return value.tolist() if int(np.prod(tuple(value.shape))) <= 64 else {"array": tensor_digest(value)}
    if isinstance(value, (nn.Module, torch.optim.Optimizer, Dataset, torch.Generator)):
        return None  # networks and optimisers are described on their own; data by its identity
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return describe(dataclasses.asdict(value), depth)
    if isinstance(value, Mapping):
        return {str(k): describe(v, depth) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [describe(v, depth) for v in items]
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    if hasattr(value, "__dict__") and depth < 2:  # a small helper object (an image pool, a schedule)
        public = {k: v for k, v in vars(value).items() if not k.startswith("_")}
        return {"type": type(value).__name__, **{k: describe(v, depth + 1) for k, v in public.items()}}
    return type(value).__name__


def network_identity(net: nn.Module) -> dict[str, Any]:
    """Class, a hash of the printed architecture, and a hash of the current weights and buffers."""
    h = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        h.update(name.encode())
        h.update(tensor_digest(tensor).encode())
    return {"class": type(net).__name__, "architecture": digest(repr(net))[:16], "weights": h.hexdigest()[:16]}


def optimizer_settings(opt: torch.optim.Optimizer) -> dict[str, Any]:
    groups = [{k: describe(v) for k, v in g.items() if k != "params"} | {"n_params": len(g["params"])}
              for g in opt.param_groups]
    return {"class": type(opt).__name__, "groups": groups}


def step_config(step) -> dict[str, Any]:
    """The configuration of a fresh :class:`~medgan.train.step.TrainingStep` (call before loading a checkpoint)."""
    skip = {"nets", "optimizers", "schedulers"}
    # A method replaced on the instance (instrumentation: a hook, an interruption) is not a setting.
    methods = {k for k in dir(type(step)) if callable(getattr(type(step), k, None))}
    settings = {k: describe(v) for k, v in sorted(vars(step).items())
                if not k.startswith("_") and k not in skip and k not in methods}
    return {
        "class": type(step).__name__,
        "nets": {name: network_identity(net) for name, net in step.nets.items()},
        "optimizers": {name: optimizer_settings(opt) for name, opt in step.optimizers.items()},
        "schedulers": {name: type(s).__name__ for name, s in step.schedulers.items()},
        "settings": {k: v for k, v in settings.items() if v is not None},
    }


def dataset_identity(dataset: Dataset) -> dict[str, Any]:
    """``{"class", "length", "content"}``: the content comes from ``dataset.fingerprint()`` when the
    dataset provides one (cheap: indexes, parameters, cached hashes), else from hashing every item."""
    provided = getattr(dataset, "fingerprint", None)
    content = provided() if callable(provided) else items_digest(dataset)
    return {"class": type(dataset).__name__, "length": len(dataset), "content": content}


def items_digest(dataset: Dataset) -> str:
    """Hash of every item of a map-style dataset (tensors by bytes, other values by value)."""
    h = hashlib.sha256()
    for i in range(len(dataset)):
        h.update(digest(_item_description(dataset[i])).encode())
    return h.hexdigest()[:16]


def _item_description(item: Any) -> Any:
    if torch.is_tensor(item) or isinstance(item, np.ndarray):
        return tensor_digest(item)
    if isinstance(item, Mapping):
        return {str(k): _item_description(v) for k, v in item.items()}
    if isinstance(item, (list, tuple)):
        return [_item_description(v) for v in item]
    return describe(item)


def run_fingerprint(step, dataset: Dataset, *, seed: int, batch_size: int | list, precision: str, total_steps: int,
                    extra: Mapping[str, Any] | None = None, augment=None,
                    sample_weights=None, memory_format: str | None = None) -> dict[str, Any]:
    """Everything that makes a run's weights what they are (see the module docstring)."""
    fp: dict[str, Any] = {"seed": int(seed), "batch_size": batch_size if isinstance(batch_size, list) else int(batch_size), "precision": precision,
                          "step": step.initial_config(), "dataset": dataset_identity(dataset),
                          "extra": describe(dict(extra or {}))}
    # Added only when used, so runs without them keep the keys they always had.
    if augment is not None:
        fp["augment"] = augment.identity()
    if sample_weights is not None:
        fp["sample_weights"] = tensor_digest(torch.as_tensor(sample_weights, dtype=torch.float64))
    if memory_format is not None:  # other kernels, other rounding: channels-last weights are other weights
        fp["memory_format"] = memory_format
    if step.schedule_uses_total_steps:
        fp["total_steps"] = int(total_steps)
    return fp
