"""Export a study's trained generator: weights, ``model.json``, provenance and a model card.

``export_model("02_ct_fidelity_diversity", "pggan", profile="default", out=DIR)`` finds the
finished run of that job (the one its notebook or ``medgan train`` trained: the engine's
fingerprint names it), and writes what :func:`medgan.load_generator` needs. It never trains:
an untrained configuration is an error saying how to train it.

Study 5's chest PGGAN (``05_cxr_pggan pggan``) also exports its latent disease axes, fitted as
the notebook fits them (:func:`cxr_latent_axes`: the finished ``multilabel`` run labels the
generated images), so that ``generate(..., label=, strength=)`` moves latents along them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from medgan import __version__, atomic
from medgan.config import Params, dataset_work_dir, git_commit, load_params, repo_root, runs_dir
from medgan.models.portable import save_generator
from medgan.studies.cxr_pggan import latent_walks
from medgan.studies.cxr_pggan.data import NORMAL, multilabel_names
from medgan.studies.cxr_pggan.jobs import z_dim_of
from medgan.studies.registry import build_job
from medgan.train.job import run_job
from medgan.train.cyclegan import CycleGANStep
from medgan.train.dcgan import DCGANStep
from medgan.train.pggan import PGGANStep
from medgan.train.pix2pix import Pix2PixStep
from medgan.train.stargan_v2 import StarGANv2Step

# data parameters that say how file intensities map to [-1, 1] (windows, SUV range, bit depth chain)
INTENSITY_KEYS = ("window", "hu", "suv", "percentile", "normalise", "bits", "channels", "image_size", "crop",
                  "view_positions", "findings")
CXR = "05_cxr_pggan"
LAYOUTS = {CXR: "chestxray14"}  # studies whose synthetic PNG sets get a labels CSV in a dataset's layout
NORMAL_LABEL = "No Finding"     # ChestX-ray14's Finding Labels of a normal image
LIMITS = ("Research use only. Not a medical device, and not validated for any clinical decision. "
          "Synthetic images can carry traits of the patients the model was trained on (see the memorisation "
          "audit below); treat them with the same data-protection care as the training data until shown otherwise.")


def generator_networks(step) -> tuple[str, dict[str, nn.Module]]:
    """The kind of model and the networks inference needs (EMA copies where the training keeps them)."""
    if isinstance(step, DCGANStep):
        return "unconditional", {"generator": step.nets["G"]}
    if isinstance(step, PGGANStep):
        return "unconditional", {"generator": step.nets["G_ema"]}
    if isinstance(step, CycleGANStep):
        return "translation", {"A_to_B": step.nets["G_AB"], "B_to_A": step.nets["G_BA"]}
    if isinstance(step, Pix2PixStep):
        return "translation", {"generator": step.nets["G"]}
    if isinstance(step, StarGANv2Step):
        return "style_transfer", {"generator": step.nets["generator_ema"],
                                  "mapping_network": step.nets["mapping_network_ema"]}
    raise TypeError(f"{type(step).__name__} trains no image generator (classifiers and regressors are not exported)")


def _intensity(params: Params) -> dict[str, Any]:
    data = params.get("data", {})
    return {k: v for k, v in (data.to_dict() if hasattr(data, "to_dict") else dict(data)).items()
            if any(word in k for word in INTENSITY_KEYS) and k not in ("root", "work_dir", "phantom")}


def _data_source(params: Params) -> str:
    root = params.get("data", {}).get("root")
    if root:  # a folder name can be a patient ID: only the hash of the path is kept
        return f"real data ({dataset_work_dir(root).name})"
    return "embedded phantom (medgan.data.phantoms)"


def _report_results(notebook: str, profile: str) -> dict[str, Any] | None:
    path = repo_root() / "reports" / f"{notebook}.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    return results if results.get("profile") == profile else None


def cxr_latent_axes(params: Params, gan_step, *, profile: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Study 5's latent disease axes of a trained ``pggan``, as its notebook fits them.

    The finished ``multilabel`` run of the same profile (never trained here: ``require_finished``)
    scores ``axes.n_generate`` generated images, and :func:`latent_walks.discover` fits one unit axis
    per class with enough single-finding images. Returns (label -> axis (z_dim,) float64, the
    ``model.json`` record: labeller, counts, fit settings and the strength convention).
    """
    labeller_job = build_job(CXR, "multilabel", params)
    labeller = run_job(labeller_job, runs_dir() / CXR / profile / "multilabel", require_finished=True, progress=False)
    names = multilabel_names(params)
    found = latent_walks.discover(params, gan_step, labeller_job.step.model, names).axes
    a = params.axes
    z_dim = z_dim_of(gan_step)
    record = {
        "method": "TL-GAN style (study 5, part b): generated images scored by the multi-label classifier; "
                  "single-finding images kept; class-weighted linear regression of its outputs on z; "
                  "each slope normalised to unit length",
        "labeller": {"job": "multilabel", "run": labeller.run_dir.name, "steps": labeller.step,
                     "architecture": params.classifier.arch, "outputs": names},
        "counts": found.counts,   # single-finding generated images per class
        "fitted": found.found,    # a class below fit.min_images gets no axis
        "fit": {"n_generate": a.n_generate, "keep_above": a.keep_above, "others_below": a.others_below,
                "min_images": a.min_images, "ridge": a.ridge},
        # the study's walk unit (latent_walks.walk_steps): sqrt(z_dim), a standard-normal latent's typical length
        "scale": float(np.sqrt(z_dim)),
        "convention": "latent = z + strength * scale * axis, z ~ N(0, I); strength in the study's axes.walk_steps "
                      "units; strength 0 = the plain image",
        "study_walk_steps": [float(v) for v in a.walk_steps],
        "default_strength": float(max(a.walk_steps)),  # the end of the study's walks, where it measured them
        "finding_labels": {name: NORMAL_LABEL if name == NORMAL else name for name in names},  # for the CSV
    }
    return {name: found.axes[k] for k, name in enumerate(names) if found.found[name]}, record


def export_model(notebook: str, model: str, *, out: str | Path, profile: str = "default",
                 overrides: Sequence[str] | Mapping[str, Any] | None = None, data_root: str | None = None) -> Path:
    """Write the trained generator ``model`` of ``notebook`` (profile, overrides, data) to ``out``.

    ``05_cxr_pggan pggan`` also needs the finished ``multilabel`` run, for its latent axes."""
    params = load_params(notebook, profile, overrides, data_root=data_root)
    job = build_job(notebook, model, params)
    result = run_job(job, runs_dir() / notebook / profile / model, require_finished=True, progress=False)
    kind, nets = generator_networks(job.step)
    spec: dict[str, Any] = {
        "kind": kind,
        "study": notebook, "model": model,
        "image": _image_geometry(kind, nets, params),
        "intensity": {"range": [-1.0, 1.0], "from data parameters": _intensity(params)},
        "inference_mode": params.get("inference_mode", "eval") if hasattr(params, "get") else "eval",
        "inference_batch_size": int(params.get("inference_batch_size", 1) or 1) if hasattr(params, "get") else 1,
        "provenance": {"profile": profile, "steps": result.step, "seed": params.get("seed"),
                       "medgan": __version__, "commit": git_commit(), "data source": _data_source(params),
                       "run": result.run_dir.name},
    }
    if kind == "unconditional":
        spec["latent_dim"] = int(nets["generator"].init_args["z_dim"])
    if notebook in LAYOUTS:
        spec["layout"] = LAYOUTS[notebook]
        if job.info.get("normal only"):
            spec["label"] = NORMAL_LABEL
    axes = None
    if (notebook, model) == (CXR, "pggan"):
        axes, spec["latent_axes"] = cxr_latent_axes(params, job.step, profile=profile)
    if kind == "style_transfer":
        mapping = nets["mapping_network"].init_args
        spec.update(latent_dim=int(mapping["latent_dim"]), num_domains=int(mapping["num_domains"]),
                    domains=list(getattr(job.dataset, "domain_names", []) or []))
    if kind == "translation" and "A_to_B" in nets:
        spec["directions"] = {"A_to_B": "domain A -> domain B", "B_to_A": "domain B -> domain A"}
    out = save_generator(out, nets, spec, latent_axes=axes)
    atomic.write_text(Path(out) / "model_card.md", model_card(spec, _report_results(notebook, profile)))
    return Path(out)


def _image_geometry(kind: str, nets: Mapping[str, nn.Module], params: Params) -> dict[str, Any]:
    args = next(iter(nets.values())).init_args
    if kind == "unconditional":
        size = args.get("image_size", args.get("resolution"))
        return {"channels": int(args["channels"]), "size": int(size)}
    channels = args.get("in_channels", args.get("channels"))
    size = args.get("image_size") or params.get("data", {}).get("image_size")
    return {"channels": int(channels), "size": int(size) if size else None}


def model_card(spec: Mapping[str, Any], results: Mapping[str, Any] | None) -> str:
    """The model card: what it is, what it was trained on, how it scored, and its limits."""
    p = spec["provenance"]
    lines = [f"# {spec['study']} · {spec['model']}", "",
             f"A medgan {spec['kind'].replace('_', ' ')} generator, exported from the study notebook "
             f"`{spec['study']}` (profile `{p['profile']}`).", "",
             "## Training", "",
             f"- data: {p['data source']}",
             f"- {p['steps']:,} iterations, seed {p['seed']}; medgan {p['medgan']}, commit `{p['commit']}`",
             f"- images: {spec['image']['channels']} channel(s), {spec['image']['size']} px, values in [-1, 1]",
             f"- intensity convention (data parameters): `{json.dumps(spec['intensity']['from data parameters'])}`"]
    if spec.get("domains"):
        lines.append(f"- domains: {', '.join(map(str, spec['domains']))}")
    if spec.get("latent_axes"):
        lines += ["", "## Latent axes", "", _axes_text(spec["latent_axes"])]
    lines += ["", "## Results in the study's report", ""]
    if results is None:
        lines.append(f"No report of profile `{p['profile']}` was found: run `make reproduce` for its metrics.")
    else:
        for h in results.get("headlines", []):
            paper = f" (paper: {h['paper']})" if h.get("paper") is not None else ""
            lines.append(f"- {h['label']}: {_fmt(h.get('ours'))}{paper}")
        if results.get("claims_total"):
            lines.append(f"- claims of the paper supported: {results['claims_supported']} / {results['claims_total']}")
        audits = [t for t in results.get("tables", []) if "memoris" in str(t.get("caption", "")).lower()
                  or "memoriz" in str(t.get("caption", "")).lower()]
        lines += ["", "## Memorisation audit", ""]
        if not audits:
            lines.append("The report holds no memorisation audit for this study.")
        for table in audits:
            lines.append(f"{table['caption']}")
            lines.append("")
            lines.append("| " + " | ".join([str(table.get("index_name") or "")] + [str(c) for c in table["columns"]]) + " |")
            lines.append("|" + "---|" * (len(table["columns"]) + 1))
            for row in table["rows"]:
                lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    lines += ["", "## Intended use and limits", "", LIMITS, ""]
    return "\n".join(lines)


def _axes_text(axes: Mapping[str, Any]) -> str:
    fitted = [k for k, ok in axes["fitted"].items() if ok]
    counts = ", ".join(f"{k} {v}" for k, v in axes["counts"].items())
    return (f"One unit latent direction per label, {axes['method']} (labeller: the `{axes['labeller']['job']}` "
            f"run, {axes['labeller']['steps']:,} iterations; {axes['fit']['n_generate']:,} generated images; "
            f"single-finding images per class: {counts}). Axes: {', '.join(fitted) or 'none'}. "
            f"`generate(..., label=L, strength=s)` uses {axes['convention']} (scale {axes['scale']:.4g}; "
            f"default strength {axes['default_strength']:g}). An axis makes a finding more likely to the "
            f"classifier; it is not a validated lesion model.")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
