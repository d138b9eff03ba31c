"""Train one model of one study from the command line, on 1 or N processes.

    python -m medgan.train 02_ct_fidelity_diversity pggan --profile paper --data /data/NSCLC
    torchrun --nproc_per_node=4 -m medgan.train 02_ct_fidelity_diversity pggan --profile paper

Checkpoints land in the same run folder the notebook uses, so the notebook (``resume=True``)
picks the finished model up and goes straight to evaluation.
"""

from __future__ import annotations

import argparse

from medgan.config import load_params, runs_dir
from medgan.train import distributed
from medgan.train.recipes import available, build_job, run_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medgan.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", nargs="?", help="study notebook name, e.g. 02_ct_fidelity_diversity")
    parser.add_argument("model", nargs="?", help="model name in that study's recipe, e.g. pggan")
    parser.add_argument("--profile", default="default", help="params profile: smoke, default or paper")
    parser.add_argument("--data", default=None, help="real dataset root (sets data.root)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="parameter override")
    parser.add_argument("--list", action="store_true", help="list the available recipes")
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


if __name__ == "__main__":
    raise SystemExit(main())
