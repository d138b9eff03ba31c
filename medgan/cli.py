"""The ``medgan`` command (also ``python -m medgan``): one way to do each thing.

    medgan reproduce [--nb 02_ct_fidelity_diversity] [--profile default] [--data DIR] [--set k=v]
    medgan train 02_ct_fidelity_diversity pggan --profile paper --data /data/NSCLC-Radiomics
    torchrun --nproc_per_node=4 -m medgan train 02_ct_fidelity_diversity pggan --profile paper
    medgan train --list
    medgan data --all

``train`` writes to the same run folder the notebook uses, so the notebook then finds the
finished model and goes straight to evaluation.
"""

from __future__ import annotations

import argparse
import sys

from medgan.config import load_params, runs_dir
from medgan.data.phantoms.__main__ import main as phantoms_main
from medgan.reports.__main__ import main as reports_main
from medgan.studies import available, build_job, run_job
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


COMMANDS = {
    "reproduce": (lambda argv: reports_main(["run", *argv]), "render study reports (python -m medgan.reports run)"),
    "train": (train_main, "train one model of one study (torchrun-ready)"),
    "data": (phantoms_main, "generate the embedded phantom datasets"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip() + "\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:10s} {help_text}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]][0](argv[1:]) or 0


if __name__ == "__main__":
    raise SystemExit(main())
