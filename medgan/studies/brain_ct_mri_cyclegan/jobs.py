"""Study 3: CycleGAN brain CT <-> MRI, ResNet-9 vs U-Net-256 generators (papers/002).

Models registered for ``03_brain_ct_mri_cyclegan``: one per key of ``params.models``
(``resnet`` and ``unet`` in the shipped profiles), each a :class:`CycleGANStep` with two
generators of that architecture and two 70x70 PatchGAN discriminators. Domain A = CT and
B = MRI (``data.a_modality``), so ``G_AB`` is CT -> MRI and ``G_BA`` is MRI -> CT.

Also here, for the notebook: :func:`load_data` (the four Kaggle-layout folders, the truth of
the phantom's test images when present) and :func:`architecture_table` (parameter counts at
the paper's configuration and at ours).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from medgan.config import Params
from medgan.data.brain_ct_mri import BrainCTMRI
from medgan.models.image_to_image import count_parameters, define_discriminator, define_generator
from medgan.train.cyclegan import CycleGANStep, UnpairedDataset
from medgan.train.recipes import TrainingJob, register

NOTEBOOK = "03_brain_ct_mri_cyclegan"
MODALITY_NAMES = {"ct": "CT", "mri": "MRI"}


@dataclass
class BrainData:
    """The four folders of the dataset as loaded datasets, plus where they came from."""

    root: Path
    train_a: BrainCTMRI
    train_b: BrainCTMRI
    test_a: BrainCTMRI
    test_b: BrainCTMRI
    name_a: str  # "CT" or "MRI"
    name_b: str
    has_truth: bool  # the test items carry their true counterpart as "target" (phantom only)

    @property
    def direction_ab(self) -> str:
        return f"{self.name_a}→{self.name_b}"

    @property
    def direction_ba(self) -> str:
        return f"{self.name_b}→{self.name_a}"

    def counts(self) -> pd.DataFrame:
        """Images and subjects per folder (subjects are pseudonymous keys)."""
        rows = []
        for part, ds, name in (("train", self.train_a, self.name_a), ("train", self.train_b, self.name_b),
                               ("test", self.test_a, self.name_a), ("test", self.test_b, self.name_b)):
            rows.append({"part": part, "modality": name, "images": len(ds), "subjects": len(set(subjects_of(ds)))})
        return pd.DataFrame(rows)

    def subject_overlap(self) -> pd.DataFrame:
        """Subjects shared between folders (train A and B should share none: unpaired; train and test none)."""
        sets = {k: set(subjects_of(ds))
                for k, ds in (("train A", self.train_a), ("train B", self.train_b), ("test A", self.test_a),
                              ("test B", self.test_b))}
        return pd.DataFrame({a: {b: len(sa & sb) for b, sb in sets.items()} for a, sa in sets.items()})


def data_root(params: Params) -> Path:
    """``data.root`` when given, else the brain phantom generated with ``data.phantom`` options."""
    from medgan.data.phantoms import dataset_root

    return dataset_root(params.data, "brain")


def load_data(params: Params) -> BrainData:
    """Load train/test of both domains at ``data.image_size``; test items get ``target`` when truth exists."""
    root = data_root(params)
    d = params.data
    common = dict(image_size=d.image_size, crop_pad_size=d.crop_pad_size, a_modality=d.a_modality,
                  skip_bad=d.skip_bad)
    has_truth = (root / "truth").is_dir()
    sets = {f"{part}_{domain.lower()}": BrainCTMRI(root, domain=domain, part=part,
                                                  with_truth=has_truth and part == "test", **common)
            for part in ("train", "test") for domain in ("A", "B")}
    name_a = MODALITY_NAMES[d.a_modality]
    name_b = MODALITY_NAMES["mri" if d.a_modality == "ct" else "ct"]
    return BrainData(root=root, name_a=name_a, name_b=name_b, has_truth=has_truth, **sets)


def stack_images(dataset, key: str = "image") -> torch.Tensor:
    """All items' ``key`` tensors as one (N, C, H, W) tensor."""
    return torch.stack([dataset[i][key] for i in range(len(dataset))])


def subjects_of(dataset) -> list[str]:
    return [dataset[i]["subject"] for i in range(len(dataset))]


def build_networks(params: Params, model: str) -> dict[str, torch.nn.Module]:
    """G_AB, G_BA, D_A, D_B for ``params.models[model]`` (1 channel each), initialised N(0, 0.02)."""
    if model not in params.models:
        raise KeyError(f"params.models has no '{model}' (has {sorted(params.models)})")
    g, d = params.models[model], params.discriminator
    channels = int(params.data.channels)

    def generator():
        return define_generator(g.generator, channels, channels, width=g.width, norm=g.norm, dropout=g.dropout)

    def discriminator():
        return define_discriminator(channels, width=d.width, n_layers=d.n_layers, norm=d.norm)

    return {"G_AB": generator(), "G_BA": generator(), "D_A": discriminator(), "D_B": discriminator()}


def total_steps(params: Params, n_a: int, n_b: int) -> int:
    """``train.steps``, or ``train.epochs`` epochs of max(|A|, |B|) images (the reference's epoch)."""
    t = params.train
    if t.get("epochs") is not None:
        return int(t.epochs) * max(n_a, n_b) // int(t.batch_size)
    return int(t.steps)


def build_cyclegan(params: Params, model: str, *, data: BrainData | None = None) -> TrainingJob:
    """The CycleGAN job for ``params.models[model]`` on the unpaired train folders."""
    from medgan.train import seed_everything

    data = data or load_data(params)
    seed_everything(int(params.seed))
    nets = build_networks(params, model)
    t = params.train
    n_show = 3
    step = CycleGANStep(nets["G_AB"], nets["G_BA"], nets["D_A"], nets["D_B"], lr=t.lr, betas=tuple(t.betas),
                        lambda_cycle=t.lambda_cycle, lambda_identity=t.lambda_identity, pool_size=t.pool_size,
                        decay_start=t.decay_start,
                        sample_inputs=(stack_images(data.test_a)[:n_show], stack_images(data.test_b)[:n_show]))
    dataset = UnpairedDataset(data.train_a, data.train_b)
    steps = total_steps(params, len(data.train_a), len(data.train_b))
    fingerprint = {"model": params.models[model].to_dict(), "discriminator": params.discriminator.to_dict(),
                   "train": t.to_dict(), "data": params.data.to_dict(), "seed": params.seed}
    options = dict(total_steps=steps, batch_size=int(t.batch_size), seed=int(params.seed), device=params.device,
                   precision=t.precision, log_every=int(t.log_every), sample_every=int(t.sample_every),
                   sample_count=6 * n_show, checkpoint_every=int(t.checkpoint_every), fingerprint=fingerprint,
                   desc=f"CycleGAN {params.models[model].generator}")
    info = {"generator": params.models[model].generator, "width": params.models[model].width, "steps": steps,
            "parameters_G": count_parameters(nets["G_AB"]), "parameters_D": count_parameters(nets["D_A"])}
    return TrainingJob(step=step, dataset=dataset, options=options, info=info)


def _make_builder(model: str):
    def builder(params: Params) -> TrainingJob:
        return build_cyclegan(params, model)
    builder.__name__ = f"cyclegan_{model}"
    return builder


for _model in ("resnet", "unet"):
    register(NOTEBOOK, _model)(_make_builder(_model))


# the paper's generators at its configuration (3-channel PNGs as loaded by the reference code, width 64)
PAPER_ARCHITECTURES = {"resnet": "resnet_9blocks", "unet": "unet_256"}
PAPER_PARAMS_M = {"resnet_9blocks": 11.4, "unet_256": 54.4}


def architecture_table(params: Params) -> pd.DataFrame:
    """Generator/discriminator parameter counts: the paper's configuration (3 -> 3 channels, width 64,
    instance norm, as the reference code loads the PNGs as RGB) and the one this run trains."""
    rows = []
    for model, g in params.models.items():
        paper_name = PAPER_ARCHITECTURES.get(model)
        if paper_name is not None:
            with torch.device("meta"):  # counting only
                paper_g = define_generator(paper_name, 3, 3, width=64, norm="instance", init_gain=None)
                paper_d = define_discriminator(3, width=64, init_gain=None)
            paper_count, paper_d_count = count_parameters(paper_g), count_parameters(paper_d)
        else:
            paper_count = paper_d_count = None
        with torch.device("meta"):
            ours_g = define_generator(g.generator, params.data.channels, params.data.channels, width=g.width,
                                      norm=g.norm, dropout=g.dropout, init_gain=None)
            ours_d = define_discriminator(params.data.channels, width=params.discriminator.width,
                                          n_layers=params.discriminator.n_layers, init_gain=None)
        rows.append({"model": model, "paper generator": paper_name,
                     "paper reports (M)": PAPER_PARAMS_M.get(paper_name),
                     "reference code, 3ch w64 (M)": None if paper_count is None else paper_count / 1e6,
                     "PatchGAN D, 3ch w64 (M)": None if paper_d_count is None else paper_d_count / 1e6,
                     "our generator": g.generator, "our width": g.width,
                     "ours G (M)": count_parameters(ours_g) / 1e6, "ours D (M)": count_parameters(ours_d) / 1e6})
    return pd.DataFrame(rows).set_index("model")


# --- notebook glue: translating the test sets, tables of the paper beside ours -----------------
MODEL_LABELS = {"resnet": "ResNet-9", "unet": "U-Net"}


@dataclass
class TestTranslations:
    """Every test image translated by every model, keyed by method label and direction ("CT→MRI")."""

    sources: dict[str, torch.Tensor]                      # direction -> source images (N, C, H, W)
    subjects: dict[str, list[str]]                        # direction -> subject keys of the sources
    truths: dict[str, torch.Tensor | None]                # direction -> true target images (phantom) or None
    real_targets: dict[str, tuple[torch.Tensor, list[str]]]  # direction -> real test images of the target domain
    real_train_targets: dict[str, tuple[torch.Tensor, list[str]]]  # direction -> real train images of the target domain
    predictions: dict[str, dict[str, torch.Tensor]]       # method -> direction -> translations
    reconstructions: dict[str, dict[str, torch.Tensor]]   # method -> direction -> cycle reconstructions


def model_label(params: Params, model: str) -> str:
    """'ResNet-9 (resnet_9blocks, w16)'-style label of a trained model."""
    g = params.models[model]
    return f"{MODEL_LABELS.get(model, model)} ({g.generator}, w{g.width})"


def translate_test_sets(steps: dict[str, CycleGANStep], data: BrainData, params: Params, *,
                        include_untrained: bool = True) -> TestTranslations:
    """Translate both test folders with each trained step (``{model key: step}``) and, as a baseline,
    with freshly initialised (untrained) ResNet generators of the same configuration."""
    from medgan.train.cyclegan import translate

    ab, ba = data.direction_ab, data.direction_ba
    a, b = stack_images(data.test_a), stack_images(data.test_b)
    bs = int(params.eval.batch_size)
    generators = {model_label(params, m): (s.nets["G_AB"], s.nets["G_BA"]) for m, s in steps.items()}
    if include_untrained and "resnet" in params.models:
        from medgan.train import seed_everything

        seed_everything(int(params.seed) + 1)
        nets = build_networks(params, "resnet")
        generators["untrained " + MODEL_LABELS["resnet"]] = (nets["G_AB"], nets["G_BA"])
    predictions, reconstructions = {}, {}
    for label, (g_ab, g_ba) in generators.items():
        fake_b, fake_a = translate(g_ab, a, batch_size=bs), translate(g_ba, b, batch_size=bs)
        predictions[label] = {ab: fake_b, ba: fake_a}
        reconstructions[label] = {ab: translate(g_ba, fake_b, batch_size=bs), ba: translate(g_ab, fake_a, batch_size=bs)}
    truths = {ab: stack_images(data.test_a, "target") if data.has_truth else None,
              ba: stack_images(data.test_b, "target") if data.has_truth else None}
    return TestTranslations(
        sources={ab: a, ba: b}, subjects={ab: subjects_of(data.test_a), ba: subjects_of(data.test_b)}, truths=truths,
        real_targets={ab: (b, subjects_of(data.test_b)), ba: (a, subjects_of(data.test_a))},
        real_train_targets={ab: (stack_images(data.train_b), subjects_of(data.train_b)),
                            ba: (stack_images(data.train_a), subjects_of(data.train_a))},
        predictions=predictions, reconstructions=reconstructions)


def translation_rows(out: TestTranslations, direction: str, *, n: int) -> dict[str, torch.Tensor]:
    """Rows for a translation grid: source, then each trained model's translation and reconstruction, then truth."""
    src, dst = direction.split("→")
    rows = {f"{src} (input)": out.sources[direction][:n]}
    for label, by_direction in out.predictions.items():
        if label.startswith("untrained"):
            continue
        rows[f"{label.split(' (')[0]} {direction}"] = by_direction[direction][:n]
        rows[f"{label.split(' (')[0]} {direction}→{src}"] = out.reconstructions[label][direction][:n]
    if out.truths.get(direction) is not None:
        rows[f"true {dst}"] = out.truths[direction][:n]
    return rows


def train_images_and_labels(data: BrainData) -> tuple[torch.Tensor, torch.Tensor]:
    """Train images of both domains and their modality labels (0 = CT, 1 = MRI), for an in-domain extractor."""
    images = torch.cat([stack_images(data.train_a), stack_images(data.train_b)])
    labels = torch.tensor([data.train_a[i]["label"] for i in range(len(data.train_a))]
                          + [data.train_b[i]["label"] for i in range(len(data.train_b))])
    return images, labels


def hyperparameters(params: Params) -> pd.DataFrame:
    """The CycleGAN training settings of this run, beside the paper's (reference defaults)."""
    t = params.train
    ours = {"image size (px)": params.data.image_size, "batch size": t.batch_size,
            "iterations": t.steps if t.get("epochs") is None else f"{t.epochs} epochs",
            "Adam lr, betas": f"{t.lr:g}, {tuple(t.betas)}", "lambda cycle": t.lambda_cycle,
            "lambda identity (x lambda cycle)": t.lambda_identity, "image pool": t.pool_size,
            "lr decay starts at": f"{t.decay_start:.0%} of training", "adversarial loss": "LSGAN",
            "discriminator": f"PatchGAN n_layers={params.discriminator.n_layers}, w{params.discriminator.width}"}
    paper = {"image size (px)": 256, "batch size": "1 (reference default)", "iterations": "200 epochs",
             "Adam lr, betas": "2e-4, (0.5, 0.999) (reference default)", "lambda cycle": "λ (10 in the reference)",
             "lambda identity (x lambda cycle)": "not stated (0.5 reference default)",
             "image pool": "not stated (50 reference default)", "lr decay starts at": "not stated (50% reference)",
             "adversarial loss": "log-likelihood in eq. (1); reference code: LSGAN",
             "discriminator": "PatchGAN 70x70 (reference default)"}
    return pd.DataFrame({"paper": paper, "ours": ours})


PAPER_FID = {"ResNet-9": {"CT→MRI": 58.32, "MRI→CT": 71.41, "params (M)": 11.4},
             "U-Net": {"CT→MRI": 95.19, "MRI→CT": 90.47, "params (M)": 54.4}}


def paper_table() -> pd.DataFrame:
    """The paper's Table (FID per direction and generator parameters), ImageNet-Inception FID on the Kaggle data."""
    return pd.DataFrame(PAPER_FID).T


def ours_fid_table(summary: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Our FID per direction (estimate and CI) and generator parameters, rows like :func:`paper_table`."""
    rows = {}
    for model in params.models:
        label = model_label(params, model)
        fid = summary[(summary["metric"] == "fid") & (summary["method"] == label)]
        row = {r.direction: f"{r.estimate:.3g} [{r.low:.3g}, {r.high:.3g}]" for r in fid.itertuples()}
        with torch.device("meta"):
            g = params.models[model]
            net = define_generator(g.generator, params.data.channels, params.data.channels, width=g.width,
                                   norm=g.norm, init_gain=None)
        row["params (M)"] = round(count_parameters(net) / 1e6, 3)
        rows[MODEL_LABELS.get(model, model)] = row
    return pd.DataFrame(rows).T


def claims_table(summary: pd.DataFrame, params: Params, data: BrainData) -> pd.DataFrame:
    """The study's claims (and ours) checked on this run: each with the evidence and a verdict."""
    res, unet = model_label(params, "resnet"), model_label(params, "unet")
    est = summary.set_index(["method", "direction", "metric"])

    def has(method: str, direction: str, metric: str) -> bool:
        return (method, direction, metric) in est.index

    def get(method: str, direction: str, metric: str) -> float:
        return float(est.loc[(method, direction, metric), "estimate"])

    rows = []
    for direction in (data.direction_ab, data.direction_ba):
        if has(res, direction, "fid") and has(unet, direction, "fid"):
            a, b = get(res, direction, "fid"), get(unet, direction, "fid")
            rows.append({"claim": f"ResNet-9 has lower FID than U-Net ({direction}) [paper]",
                         "evidence": f"FID {a:.3g} vs {b:.3g}", "supported": a < b})
        if has(res, direction, "ssim") and has(unet, direction, "ssim"):
            a, b = get(res, direction, "ssim"), get(unet, direction, "ssim")
            rows.append({"claim": f"ResNet-9 is closer to the truth than U-Net by SSIM ({direction}) [ours]",
                         "evidence": f"SSIM {a:.3f} vs {b:.3f}", "supported": a > b})
            if has(res, direction, "fid") and has(unet, direction, "fid"):
                same = (get(res, direction, "fid") < get(unet, direction, "fid")) == (a > b)
                rows.append({"claim": f"FID ranks the generators as the truth (SSIM) does ({direction}) [ours]",
                             "evidence": "same order" if same else "orders differ", "supported": same})
        for label in (res, unet):
            if has(label, direction, "ssim") and has("identity", direction, "ssim"):
                a, b = get(label, direction, "ssim"), get("identity", direction, "ssim")
                low = float(est.loc[(label, direction, "ssim"), "low"])
                high_id = float(est.loc[("identity", direction, "ssim"), "high"])
                rows.append({"claim": f"{label.split(' (')[0]} beats the identity baseline on SSIM ({direction}) [bar]",
                             "evidence": f"SSIM {a:.3f} [CI low {low:.3f}] vs identity {b:.3f} [CI high {high_id:.3f}]",
                             "supported": a > b})
    return pd.DataFrame(rows)


def training_summary(jobs: dict[str, TrainingJob], results: dict) -> pd.DataFrame:
    """One row per trained model: generator, parameters, iterations, wall time (0 trained = reloaded)."""
    rows = []
    for model, job in jobs.items():
        r = results[model]
        rows.append({"model": model, "generator": job.info["generator"], "width": job.info["width"],
                     "G parameters (M)": job.info["parameters_G"] / 1e6, "D parameters (M)": job.info["parameters_D"] / 1e6,
                     "iterations": r.step, "trained now": r.trained_steps,
                     "wall time (s)": round(r.wall_time_s, 1), "s / iteration": (r.wall_time_s / r.trained_steps
                                                                               if r.trained_steps else None)})
    return pd.DataFrame(rows).set_index("model")
