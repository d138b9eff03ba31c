"""The ``medgan`` command (also ``python -m medgan``): one way to do each thing.

    medgan reproduce [--nb 02_ct_fidelity_diversity] [--profile default] [--data DIR] [--set k=v]
    medgan train 02_ct_fidelity_diversity pggan --profile paper --data /data/NSCLC-Radiomics
    torchrun --nproc_per_node=4 -m medgan train 02_ct_fidelity_diversity pggan --profile paper
    medgan train --list
    medgan data --all
    medgan export 02_ct_fidelity_diversity pggan --out exported/ct-pggan
    medgan generate exported/ct-pggan --n 100 --format dicom --out synthetic/ct
    medgan translate exported/brain-resnet --in ct_pngs --out mri_pngs
    medgan score real_pngs synthetic/ct --metrics fid,kid --weights inception.pth

``train`` writes to the same run folder the notebook uses, so the notebook then finds the
finished model and goes straight to evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medgan import atomic
from medgan.config import load_params, runs_dir
from medgan.data.image_files import FORMATS
from medgan.data.synthetic import generate_dataset, translate_folder
from medgan.metrics.folders import EXTRACTORS, METRICS, score_folders
from medgan.models.portable import load_generator
from medgan.data.phantoms.__main__ import main as phantoms_main
from medgan.reports.__main__ import main as reports_main
from medgan.studies import available, build_job, run_job
from medgan.studies.export import export_model
from medgan.train import distributed


def train_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medgan train", description="Train one model of one study, on 1 or N processes.",
                                     epilog="example: torchrun --nproc_per_node=4 -m medgan train 05_cxr_pggan pggan "
                                            "--profile paper --data /data/cxr")
    parser.add_argument("notebook", nargs="?", help="study notebook name, e.g. 02_ct_fidelity_diversity")
    parser.add_argument("model", nargs="?", help="model name in that study's jobs, e.g. pggan")
    parser.add_argument("--profile", default="default", help="params profile: smoke, default or paper")
    parser.add_argument("--data", default=None, help="real dataset root (sets data.root)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="parameter override")
    parser.add_argument("--list", action="store_true", help="list every study/model pair")
    args = parser.parse_args(argv)
    if args.list or not (args.notebook and args.model):
        for notebook, model in available():
            print(f"{notebook} {model}")
        return 0
    dist_info = distributed.init()
    params = load_params(args.notebook, args.profile, args.set, data_root=args.data)
    job = build_job(args.notebook, args.model, params)
    result = run_job(job, runs_dir() / args.notebook / args.profile / args.model)
    if dist_info.is_main:
        print(f"{args.notebook}:{args.model}: {result.step} steps, {result.wall_time_s:.1f} s -> {result.run_dir}")
    distributed.cleanup()
    return 0


def export_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="medgan export", description="Write a study's trained generator (safetensors weights, model.json, "
                                          "model_card.md) so that medgan.load_generator(DIR) runs it anywhere.",
        epilog="example: medgan export 02_ct_fidelity_diversity pggan --profile default --out exported/ct-pggan")
    parser.add_argument("notebook", help="study notebook name, e.g. 02_ct_fidelity_diversity")
    parser.add_argument("model", help="its generator job (medgan train --list)")
    parser.add_argument("--profile", default="default", help="params profile the model was trained with")
    parser.add_argument("--data", default=None, help="the dataset root it was trained on (sets data.root)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="parameter override")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    out = export_model(args.notebook, args.model, out=args.out, profile=args.profile, overrides=args.set,
                       data_root=args.data)
    print(f"exported {args.notebook}:{args.model} -> {out}")
    return 0


def generate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="medgan generate", description="Write a synthetic dataset from an exported unconditional generator "
                                            "(streamed to disk; files already there are skipped).",
        epilog="examples: medgan generate exported/ct-pggan --n 6080 --seed 0 --format dicom --out synthetic/ct\n"
               "          medgan generate exported/cxr-pggan --n 500 --label 'Pleural Effusion' --strength 1.5 "
               "--out synthetic/effusion", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a folder written by medgan export")
    parser.add_argument("--n", type=int, required=True, help="images to write")
    parser.add_argument("--seed", type=int, default=0, help="the same seed writes the same images")
    parser.add_argument("--format", default="png", choices=FORMATS)
    parser.add_argument("--label", default=None,
                        help="models with latent axes (the chest PGGAN): move every latent along this label's axis; "
                             "it is also the Finding Labels of a chest model's labels CSV")
    parser.add_argument("--strength", type=float, default=None,
                        help="how far along the axis: latent = z + strength * scale * axis, in the study's walk-step "
                             "units (model.json latent_axes; default: its default_strength; 0 = the plain images)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    counts = generate_dataset(load_generator(args.model_dir), args.out, n=args.n, seed=args.seed, fmt=args.format,
                              batch_size=args.batch_size, label=args.label, strength=args.strength)
    print(f"{counts['written']} written, {counts['skipped']} already there -> {counts['folder']}")
    return 0


def translate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="medgan translate", description="Translate a folder of PNG, DICOM or NIfTI images with an exported "
                                             "translation model (CycleGAN, Pix2pix, StarGAN v2), keeping file names.",
        epilog="example: medgan translate exported/brain-resnet --in ct_pngs --direction A_to_B --out mri_pngs")
    parser.add_argument("model_dir", help="a folder written by medgan export")
    parser.add_argument("--in", dest="source", required=True, help="input folder (read recursively)")
    parser.add_argument("--out", required=True, help="output folder (same relative names)")
    parser.add_argument("--format", default=None, choices=FORMATS, help="input format (default: detected)")
    parser.add_argument("--direction", default=None, help="CycleGAN: A_to_B or B_to_A")
    parser.add_argument("--domain", default=None, help="StarGAN v2: target domain (name or index)")
    parser.add_argument("--seed", type=int, default=0, help="StarGAN v2: seed of the style codes")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    domain = int(args.domain) if args.domain is not None and args.domain.isdigit() else args.domain
    counts = translate_folder(load_generator(args.model_dir), args.source, args.out, fmt=args.format,
                              direction=args.direction, domain=domain, seed=args.seed, batch_size=args.batch_size)
    print(f"{counts['written']} {counts['format']} file(s) written, {counts['skipped']} already there "
          f"-> {counts['folder']}")
    return 0


def score_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="medgan score", description="Score a synthetic image folder against a real one, with the metrics the "
                                         "studies use; real-set features are cached.",
        epilog="example: medgan score real_pngs synthetic/ct --metrics fid,kid,pr,dc --extractor inception_v3 "
               "--weights ~/weights/inception_v3_google-0cc3c7bd.pth --bootstrap 200 --out scores.json")
    parser.add_argument("real", help="folder of real images")
    parser.add_argument("fake", help="folder of synthetic images")
    parser.add_argument("--metrics", default="fid,kid", help=f"comma-separated: {','.join(METRICS)}")
    parser.add_argument("--extractor", default="inception_v3", choices=EXTRACTORS)
    parser.add_argument("--weights", default=None, help="the extractor's weights file (nothing is downloaded)")
    parser.add_argument("--bootstrap", type=int, default=0, help="resamples for 95%% CIs of FID and KID")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--format", default=None, choices=FORMATS, help="both folders' format (default: detected)")
    parser.add_argument("--out", default=None, help="also write the scores as JSON here")
    args = parser.parse_args(argv)
    scores = score_folders(args.real, args.fake, metrics=[m for m in args.metrics.split(",") if m],
                           extractor=args.extractor, weights=args.weights, n_boot=args.bootstrap,
                           batch_size=args.batch_size, fmt=args.format)
    print(f"{scores['n_fake']} synthetic vs {scores['n_real']} real images; features: {scores['extractor']}")
    for name, values in scores["metrics"].items():
        ci = f"  [{values['ci_low']:.4g}, {values['ci_high']:.4g}]" if "ci_low" in values else ""
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k not in ("ci_low", "ci_high"))
        print(f"  {name:4s} {shown}{ci}")
    if args.out:
        atomic.write_text(Path(args.out), json.dumps(scores, indent=1))
    return 0


COMMANDS = {
    "reproduce": (lambda argv: reports_main(["run", *argv]), "render study reports (add --help for options)"),
    "train": (train_main, "train one model of one study (torchrun-ready)"),
    "data": (phantoms_main, "generate the embedded phantom datasets"),
    "export": (export_main, "write a trained generator for use anywhere (safetensors + model card)"),
    "generate": (generate_main, "write a synthetic dataset (PNG, DICOM or NIfTI) from an exported model"),
    "translate": (translate_main, "translate a folder of images with an exported model"),
    "score": (score_main, "score a synthetic folder against a real one (FID, KID, IS, PRD, P&R, D&C)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip() + "\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:10s} {help_text}")
        print("\nadd --debug to any command for the full traceback of an error")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        return COMMANDS[argv[0]][0](argv[1:]) or 0
    except KeyboardInterrupt:
        print("medgan: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line; the traceback with --debug
        if debug:
            raise
        print(f"medgan {argv[0]}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
