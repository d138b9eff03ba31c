"""Time to generate each phantom (default and smoke sizes) and to read it through its loader.

Usage: ``python benchmarks/data_phantoms.py [--smoke-only] [--names cells pet ...]``
Uses each study notebook's ``data.phantom`` options from ``params/<notebook>/{smoke,default}.yaml``
(the generator defaults where the notebook has none yet). Prints seconds per phantom and the ratio of the total to the 120 s goal for the default set
(issue 3: the whole default set within about 2 minutes on a 2-core CPU). Generates into a
temporary folder, so cached data never hides the cost.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from medgan.data.phantoms import NAMES, ensure, generator, profile_options

GOAL_DEFAULT_TOTAL_S = 120.0


def _load(name: str, root) -> int:
    if name == "cells":
        from medgan.data.rxrx19a import RxRx19a
        return len(RxRx19a(root, crop_size=64, image_size=64))
    if name == "chest_ct":
        from medgan.data.nsclc_radiomics import NSCLCRadiomics
        return len(NSCLCRadiomics(root, crop_size=96, image_size=64))
    if name == "brain":
        from medgan.data.brain_ct_mri import BrainCTMRI
        return sum(len(BrainCTMRI(root, domain=d, part=p, image_size=64)) for d in "AB" for p in ("train", "test"))
    if name == "pet":
        from medgan.data.pet_early_delayed import PETEarlyDelayed
        return len(PETEarlyDelayed(root))
    from medgan.data.chest_xray import ChestXray
    return len(ChestXray(root, image_size=64))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke-only", action="store_true")
    parser.add_argument("--names", nargs="*", default=list(NAMES))
    args = parser.parse_args()
    profiles = ["smoke"] if args.smoke_only else ["smoke", "default"]
    for profile in profiles:
        total = 0.0
        print(f"== {profile} ==")
        print(f"{'phantom':<10} {'generate_s':>10} {'gen_cpu_s':>9} {'load_s':>8} {'items':>7}")
        for name in args.names:
            # what the notebook's profile asks for; the generator's own sizes if it has none
            options = profile_options(name, profile) or (dict(generator(name).SMOKE) if profile == "smoke" else {})
            with tempfile.TemporaryDirectory() as tmp:
                start, cpu_start = time.perf_counter(), time.process_time()
                folder = ensure(name, root=tmp, **options)
                generate_s = time.perf_counter() - start
                cpu_s = time.process_time() - cpu_start  # wall time suffers when the 2 cores are shared
                start = time.perf_counter()
                items = _load(name, folder)
                load_s = time.perf_counter() - start
            total += generate_s
            print(f"{name:<10} {generate_s:>10.2f} {cpu_s:>9.2f} {load_s:>8.2f} {items:>7d}")
        line = f"total generate: {total:.1f} s"
        if profile == "default":
            line += f"; ratio to the {GOAL_DEFAULT_TOTAL_S:.0f} s goal: {total / GOAL_DEFAULT_TOTAL_S:.2f}"
        print(line)


if __name__ == "__main__":
    main()
