"""``python -m medgan.data.phantoms --all [--profile default] [--jobs 2]`` generates the phantoms
the study notebooks' profiles ask for (``data.phantom`` in ``params/<notebook>/<profile>.yaml``;
the generator's own defaults where a notebook has no such section)."""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from medgan.data.phantoms import NAMES, NOTEBOOKS, ensure, profile_options


def _one(name: str, profile: str, root: str | None) -> str:
    start = time.perf_counter()
    folder = ensure(name, root=root, **profile_options(name, profile))
    return f"{name}: {folder} ({time.perf_counter() - start:.1f} s)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Generate medgan phantom datasets")
    parser.add_argument("names", nargs="*", help=f"phantoms to generate ({', '.join(NAMES)})")
    parser.add_argument("--all", action="store_true", help="generate every phantom")
    parser.add_argument("--profile", default="default",
                        help="params profile whose data.phantom options are used (default: default)")
    parser.add_argument("--root", default=None, help="parent folder (default: data/phantoms)")
    parser.add_argument("--jobs", type=int, default=1, help="phantoms generated in parallel (processes)")
    parser.add_argument("--nb", action="append", default=[],
                        help="with --all: only the phantoms of these notebooks (name or prefix; repeatable)")
    parser.add_argument("--real-data", action="store_true",
                        help="with --all: the notebooks read a real dataset, so no phantom is needed")
    args = parser.parse_args(argv)
    names = list(NAMES) if args.all else args.names
    if args.all and args.nb:  # `make reproduce NB=...` makes only what those notebooks read
        wanted = [n for item in args.nb for n in item.split(",") if n]
        names = [name for name in names if any(NOTEBOOKS[name].startswith(w) for w in wanted)]
    if args.all and args.real_data:
        names = []
    if not names:
        if args.all:
            return
        parser.error("name a phantom or pass --all")
    if args.jobs > 1:
        # the slowest phantoms first, so the pool finishes together
        order = sorted(names, key=lambda n: ["cxr", "cells", "chest_ct", "pet", "brain"].index(n))
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("forkserver")) as pool:  # no fork of a threaded process
            for line in pool.map(_one, order, [args.profile] * len(order), [args.root] * len(order)):
                print(line, flush=True)
    else:
        for name in names:
            print(_one(name, args.profile, args.root), flush=True)


if __name__ == "__main__":
    main()
