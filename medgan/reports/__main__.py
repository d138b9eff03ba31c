"""``python -m medgan.reports run|index`` — render study notebooks into HTML reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medgan.config import repo_root
from medgan.reports.runner import _load_index, find_notebooks, index_html, run_all
from medgan import atomic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medgan.reports")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks and render reports/<notebook>.html + reports/index.html")
    run.add_argument("--nb", action="append", default=[], help="notebook name or prefix (repeatable); default: all")
    run.add_argument("--profile", default="default", help="params profile: smoke, default or paper")
    run.add_argument("--data", default=None, help="real dataset root (sets data.root)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="parameter override")
    run.add_argument("--reports-dir", default=None, help="output folder (default: <repo>/reports)")
    run.add_argument("--rehearse", action="store_true",
                     help="with --profile paper: rehearse it on paper-size phantoms (params/<nb>/rehearse.yaml cuts)")
    run.add_argument("--kernel", default=None,
                     help="Jupyter kernel (default: 'medgan' when it runs this Python, else 'python3')")
    run.add_argument("--jobs", type=int, default=None,
                     help="notebooks rendered at once, each with cores/jobs threads (default: one per core for "
                          "the default and smoke profiles on a CPU; 1 for the paper profile or on a GPU)")
    run.add_argument("--no-progress", action="store_true", help="hide papermill's cell progress bar")
    sub.add_parser("index", help="rewrite reports/index.html from reports/index.json")
    sub.add_parser("list", help="list the notebooks")
    args = parser.parse_args(argv)

    if args.command == "list":
        for nb in find_notebooks():
            print(nb.stem)
        return 0
    if args.command == "index":
        reports = repo_root() / "reports"
        atomic.write_text(reports / "index.html", index_html(_load_index(reports)))
        return 0
    nbs = [n for item in args.nb for n in item.split(",") if n]
    records = run_all(nbs or None, profile=args.profile, overrides=args.set, data_root=args.data,
                      reports_dir=Path(args.reports_dir) if args.reports_dir else None,
                      progress=not args.no_progress, rehearse=args.rehearse,
                      kernel=args.kernel, jobs=args.jobs)
    failed = [r for r in records if r.status != "ok"]
    if failed:
        print("\nFailed notebooks (previous reports kept):", file=sys.stderr)
        for r in failed:
            print(f"  {r.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
