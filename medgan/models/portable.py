"""Trained generators outside medgan: a folder of safetensors weights and a ``model.json``.

``save_generator`` writes the networks a model needs at inference (the EMA copies where there are
any), ``load_generator`` builds them again from ``model.json`` alone: no notebook, no params file,
no training state. The folder layout:

- ``model.safetensors``: every network's weights and buffers, as ``<network>.<tensor name>``;
- ``model.json``: the format, the kind of model, each network's class and constructor arguments,
  the image geometry and intensity convention, latent size, domains, and provenance;
- ``latent_axes.safetensors`` (models with latent axes, e.g. study 5's chest PGGAN): tensor
  ``axes`` (K, latent_dim) float64, one unit direction per label, rows in the order of
  ``model.json["latent_axes"]["labels"]``, which also says how they were found.

Kinds and what the loaded :class:`GeneratorModel` offers:
- ``unconditional`` (DCGAN, PGGAN): ``generate(n, seed=, batch_size=)`` and ``iter_generate``;
  with latent axes also ``generate(n, seed=, label=, strength=)`` and ``walk(label, strengths)``:
  every latent z is moved to ``z + strength * scale * axis[label]`` (:meth:`GeneratorModel.latents`);
- ``translation`` (CycleGAN's two directions, Pix2pix): ``translate(images, direction=)``;
- ``style_transfer`` (StarGAN v2): ``translate(images, domain=, seed=)``, a latent-guided style
  per image (the mapping network), as the paper's latent-guided synthesis.
Images are (N, C, H, W) float tensors in [-1, 1], as everywhere in medgan.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medgan import atomic
from medgan.models import dcgan, image_to_image, pggan, stargan_v2  # noqa: F401  (register @portable classes)
from medgan.models.registry import describe, rebuild

FORMAT = "medgan-generator/1"
WEIGHTS = "model.safetensors"
SPEC = "model.json"
AXES = "latent_axes.safetensors"
KINDS = ("unconditional", "translation", "style_transfer")
# the networks each kind needs
NETWORKS = {"unconditional": ("generator",), "translation": None, "style_transfer": ("generator", "mapping_network")}
LATENT_BLOCK = 256  # latents are drawn in seeded blocks, so image i never depends on the batch size


def save_generator(folder: str | os.PathLike, nets: Mapping[str, nn.Module], spec: Mapping[str, Any], *,
                   latent_axes: Mapping[str, Any] | None = None) -> Path:
    """Write ``nets`` (name -> ``@portable`` network) and ``spec`` (kind, image, ...) to ``folder``.

    latent_axes: label -> unit direction (latent_dim,) of an unconditional model, written to
        ``latent_axes.safetensors``; ``spec["latent_axes"]`` (how they were found, the ``scale``
        of a strength) is then required, and gains ``file`` and ``labels`` (the rows' order).
    """
    folder = Path(folder)
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"spec['kind'] must be one of {KINDS}, not {kind!r}")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{key}": value.detach().cpu().contiguous()
               for name, net in nets.items() for key, value in net.state_dict().items()}
    document = {"format": FORMAT, **spec, "networks": {name: describe(net) for name, net in nets.items()}}
    if latent_axes is not None:
        document["latent_axes"] = _save_axes(folder, latent_axes, spec)
    with atomic.atomic_path(folder / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    atomic.write_text(folder / SPEC, json.dumps(document, indent=1, default=str))
    return folder


def _save_axes(folder: Path, axes: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    record = dict(spec.get("latent_axes") or {})
    if "scale" not in record:
        raise ValueError("latent axes need spec['latent_axes']['scale'] (latent units per unit of strength)")
    labels = list(axes)
    rows = [torch.as_tensor(np.asarray(axes[k], dtype=np.float64)) for k in labels]
    matrix = torch.stack(rows) if rows else torch.zeros(0, int(spec["latent_dim"]), dtype=torch.float64)
    if matrix.ndim != 2 or matrix.shape[1] != int(spec["latent_dim"]):
        raise ValueError(f"latent axes must be (latent_dim,) = ({spec['latent_dim']},) each, got {tuple(matrix.shape)}")
    with atomic.atomic_path(folder / AXES) as tmp:
        save_file({"axes": matrix.contiguous()}, str(tmp), metadata={"format": FORMAT, "labels": json.dumps(labels)})
    return {**record, "file": AXES, "labels": labels}


def best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class GeneratorModel(nn.Module):
    """A loaded generator: ``generate`` for unconditional models, ``translate`` for the others.

    ``spec`` is the model's ``model.json``; ``nets`` its networks. They run in the study's inference
    mode (``spec["inference_mode"]``, see :func:`medgan.models.image_to_image.forward_in_mode`):
    ``"eval"`` uses batch norm's running statistics; ``"train"`` normalises each chunk of
    ``spec["inference_batch_size"]`` images with its own statistics and draws dropout masks from
    (seed, image index), so results never depend on how a caller batches, and the weights and the
    global RNG are never changed.
    """

    def __init__(self, nets: Mapping[str, nn.Module], spec: Mapping[str, Any]):
        super().__init__()
        self.spec = dict(spec)
        self.kind = self.spec["kind"]
        self.nets = nn.ModuleDict(dict(nets))
        self.requires_grad_(False)
        self.eval()
        self.inference_mode = self.spec.get("inference_mode", "eval")
        self.inference_batch_size = int(self.spec.get("inference_batch_size") or 1)
        self.axes: dict[str, torch.Tensor] = {}  # label -> unit direction (latent_dim,) float64, on the CPU

    @property
    def labels(self) -> list[str]:
        """The labels with a latent axis (``generate(..., label=)``); empty for other models."""
        return list(self.axes)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- unconditional --------------------------------------------------------------------------
    def latents(self, start: int, count: int, *, seed: int, label: str | None = None,
                strength: float | None = None) -> torch.Tensor:
        """The latent codes (count, latent_dim) float32 of images ``start .. start + count - 1`` of seed ``seed``.

        With ``label``, each code z is moved along that label's latent axis to
        ``z + strength * scale * axis`` (in float64, then float32): ``axis`` has unit length and
        ``scale`` (``model.json["latent_axes"]["scale"]``) is the study's unit of a walk step
        (study 5: sqrt(latent_dim), a latent's typical length), so ``strength`` reads like the
        study's ``axes.walk_steps``. ``strength`` defaults to ``latent_axes["default_strength"]``;
        ``strength=0`` gives the plain codes.
        """
        z_dim = int(self.spec["latent_dim"])
        blocks = []
        first, last = start // LATENT_BLOCK, (start + count - 1) // LATENT_BLOCK
        for block in range(first, last + 1):
            g = torch.Generator().manual_seed(int(seed) * 1_000_003 + block)
            blocks.append(torch.randn(LATENT_BLOCK, z_dim, generator=g))
        z = torch.cat(blocks)
        offset = start - first * LATENT_BLOCK
        z = z[offset:offset + count]
        if label is None:
            if strength is not None:
                raise ValueError("strength= moves latents along a label's axis: give label= as well")
            return z
        return self.move(z, label, self.default_strength if strength is None else strength)

    @property
    def default_strength(self) -> float:
        return float((self.spec.get("latent_axes") or {}).get("default_strength", 1.0))

    def axis(self, label: str) -> torch.Tensor:
        """The unit latent direction (latent_dim,) float64 of ``label`` (an axis name, or its CSV spelling)."""
        record = self.spec.get("latent_axes")
        if record is None:
            raise ValueError(f"label {label!r}: this model has no latent axes (only study 5's chest PGGAN "
                             f"exports them), so it cannot generate by label")
        spellings = {v: k for k, v in (record.get("finding_labels") or {}).items() if k in self.axes}
        name = label if label in self.axes else spellings.get(label)
        if name is None:
            available = ", ".join(repr(k) for k in self.axes) or "none (no class had enough single-finding images)"
            raise ValueError(f"label {label!r} has no latent axis; labels with one: {available}")
        return self.axes[name]

    def move(self, z: torch.Tensor, label: str, strength: float) -> torch.Tensor:
        """``z + strength * scale * axis(label)`` for latents z (N, latent_dim), as float32 on z's device."""
        step = float(strength) * float(self.spec["latent_axes"]["scale"]) * self.axis(label).to(z.device)
        return (z.double() + step).float()

    def _require(self, *kinds: str) -> None:
        if self.kind not in kinds:
            raise TypeError(f"this is a {self.kind} model; use "
                            f"{'generate()' if self.kind == 'unconditional' else 'translate()'}")

    @torch.no_grad()
    def iter_generate(self, n: int, *, seed: int = 0, batch_size: int = 64, start: int = 0, label: str | None = None,
                      strength: float | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """``(index of the first image, images)`` batch by batch, for images ``start .. n - 1``
        (``label``, ``strength``: see :meth:`latents`)."""
        self._require("unconditional")
        if label is not None:
            self.axis(label)  # an unknown label fails before any image is made
        if self.inference_mode == "train" and image_to_image.depends_on_inference_mode(self.nets["generator"]):
            batch_size = -(-batch_size // self.inference_batch_size) * self.inference_batch_size
        for first in range(start, n, batch_size):
            z = self.latents(first, min(batch_size, n - first), seed=seed, label=label, strength=strength)
            yield first, self._run("generator", z.to(self.device), seed=seed, start=first)

    def generate(self, n: int, *, seed: int = 0, batch_size: int = 64, label: str | None = None,
                 strength: float | None = None) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [-1, 1]; the same seed gives the same images at any batch size.

        With ``label`` (models with latent axes, :attr:`labels`), image i is that of seed ``seed``
        moved ``strength`` along the label's axis (:meth:`latents`); ``strength=0`` gives the plain images.
        """
        return torch.cat([images for _, images in self.iter_generate(n, seed=seed, batch_size=batch_size,
                                                                     label=label, strength=strength)])

    @torch.no_grad()
    def walk(self, label: str, strengths, *, seed: int = 0, index: int = 0) -> torch.Tensor:
        """Image ``index`` of ``seed`` walked along ``label``'s axis: (S, C, H, W), one per strength
        (the study's walk figure; the latents are those of ``generate(..., label=L, strength=s)``)."""
        self._require("unconditional")
        z = self.latents(index, 1, seed=seed)
        moved = torch.cat([self.move(z, label, s) for s in strengths])
        return self._run("generator", moved.to(self.device), seed=seed, start=index)

    # --- translation ----------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, images: torch.Tensor, *, direction: str | None = None, domain: int | str | None = None,
                  seed: int = 0, start: int = 0) -> torch.Tensor:
        """Translate a batch of images (N, C, H, W) in [-1, 1].

        Args:
            direction: a translation model's network (``"A_to_B"``/``"B_to_A"`` for CycleGAN;
                default: its only or first one).
            domain: a style-transfer model's target domain (index or name).
            seed, start: the style codes of a style-transfer model are those of images
                ``start ..`` of ``seed`` (so a folder translated in batches matches one pass).
        """
        self._require("translation", "style_transfer")
        x = images.to(self.device, torch.float32)
        if self.kind == "translation":
            names = list(self.nets)
            name = direction or names[0]
            if name not in self.nets:
                raise ValueError(f"direction {name!r}: this model has {names}")
            return self._run(name, x, seed=seed, start=start)
        domains = list(self.spec.get("domains") or [])
        if domain is None:
            raise ValueError(f"a style-transfer model needs domain= (one of {domains or 'the domain indices'})")
        index = domains.index(domain) if isinstance(domain, str) else int(domain)
        if not 0 <= index < int(self.spec["num_domains"]):
            raise ValueError(f"domain {domain!r} is not one of {domains or list(range(self.spec['num_domains']))}")
        z = self.latents(start, len(x), seed=seed).to(self.device)
        y = torch.full((len(x),), index, dtype=torch.long, device=self.device)
        style = self.nets["mapping_network"](z, y)
        return self.nets["generator"](x, style).clamp(-1, 1).float().cpu()


    def _run(self, name: str, x: torch.Tensor, *, seed: int, start: int) -> torch.Tensor:
        """``nets[name](x)`` in the model's inference mode; image i of ``x`` is image ``start + i``."""
        net = self.nets[name]
        if self.inference_mode == "eval" or not image_to_image.depends_on_inference_mode(net):
            return net(x).clamp(-1, 1).float().cpu()
        # Chunks sit on multiples of inference_batch_size in the whole set's numbering, so batches that
        # do too (generate rounds its batch size up to one) give the same images as one pass.
        size = self.inference_batch_size
        cuts = sorted({0, len(x), *range(-start % size, len(x), size)})
        return torch.cat([image_to_image.forward_in_mode(net, x[a:b], mode=self.inference_mode,
                                                         seed=image_to_image.dropout_seed(seed, start + a))
                          for a, b in zip(cuts, cuts[1:])]).clamp(-1, 1).float().cpu()


def load_generator(folder: str | os.PathLike, *, device: str | torch.device | None = None) -> GeneratorModel:
    """The generator exported to ``folder``, ready on ``device`` (default: CUDA, MPS or CPU)."""
    folder = Path(folder)
    spec_path = folder / SPEC
    if not spec_path.is_file() or not (folder / WEIGHTS).is_file():
        raise FileNotFoundError(f"{folder}: not an exported medgan model (needs {SPEC} and {WEIGHTS}; "
                                f"write one with `medgan export`)")
    spec = json.loads(spec_path.read_text())
    if spec.get("format") != FORMAT:
        raise ValueError(f"{spec_path}: format {spec.get('format')!r}, this medgan reads {FORMAT!r}")
    tensors = load_file(str(folder / WEIGHTS))
    nets = {}
    for name, description in spec["networks"].items():
        net = rebuild(description)
        prefix = f"{name}."
        net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
        if isinstance(net, pggan.Generator):
            net = pggan.full_resolution(net)  # the finished model: full depth, no fade-in
        nets[name] = net
    model = GeneratorModel(nets, spec)
    if spec.get("latent_axes") is not None:
        axes = load_file(str(folder / spec["latent_axes"]["file"]))["axes"]
        model.axes = {label: axes[k] for k, label in enumerate(spec["latent_axes"]["labels"])}
    return model.to(torch.device(device) if device is not None else best_device())
