"""Does bf16 hold? The verdicts and headline numbers of two or more renders of the same studies, side by side.

    make reproduce                                                   # fp32: copy reports/ to /tmp/fp32
    make reproduce NB=03_brain_ct_mri_cyclegan SET='train.precision=bf16'   # ... to /tmp/bf16
    .venv/bin/python benchmarks/precision_table.py /tmp/fp32 /tmp/bf16
    .venv/bin/python benchmarks/precision_table.py /tmp/A /tmp/C /tmp/D --names "fp32 2t" "fp32 1t" "bf16 1t"

For every notebook rendered in the first folder and at least one other, it prints a markdown table:
each claim's verdict in every run, and each headline number with its interval (the study's CI, or
the spread it reports), marking whether each later run's value lies inside the first run's
interval. A run "holds" against the first when every verdict is the same and every headline with
an interval stays inside it; the default profile adopts bf16 only for studies that hold (issue 18).
With three or more folders the table also shows how far two fp32 runs that differ only in their
floating-point order (thread count, optimizer kernel) move from each other: the noise floor that
any other change of the arithmetic is measured against.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def _fmt(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _with_interval(h: dict | None) -> str:
    if h is None:
        return "—"
    if h.get("low") is None or h.get("high") is None:
        return _fmt(h["ours"])
    return f"{_fmt(h['ours'])} [{_fmt(h['low'])}, {_fmt(h['high'])}]"


def _verdict(claim: dict | None) -> str:
    return "—" if claim is None else ("supported" if claim["supported"] else "not supported")


def compare(reports: list[dict], names: list[str]) -> tuple[list[str], list[bool]]:
    """Markdown lines comparing ``reports[0]`` with each later report, and whether each later one holds."""
    first, others = reports[0], reports[1:]
    holds = [True] * len(others)
    lines = [f"| verdict | {' | '.join(names)} | all the same |", "|---|" + "---|" * (len(names) + 1)]
    claims = [{c["claim"]: c for c in r.get("claims", [])} for r in others]
    for c in first.get("claims", []):
        row = [c] + [by_name.get(c["claim"]) for by_name in claims]
        for i, other in enumerate(row[1:]):
            holds[i] &= other is not None and other["supported"] == c["supported"]
        same = all(o is not None and o["supported"] == c["supported"] for o in row[1:])
        lines.append(f"| {c['claim']} | {' | '.join(_verdict(o) for o in row)} | {'yes' if same else '**no**'} |")
    lines += ["", f"| headline | {' | '.join(names)} | inside {names[0]}'s interval |",
              "|---|" + "---|" * (len(names) + 1)]
    heads = [{h["label"]: h for h in r.get("headlines", [])} for r in others]
    for h in first.get("headlines", []):
        row = [by_label.get(h["label"]) for by_label in heads]
        marks = []
        for i, other in enumerate(row):
            if other is None:
                marks.append("**missing**")
                holds[i] = False
            elif h.get("low") is not None and h.get("high") is not None and isinstance(other["ours"], (int, float)):
                ok = bool(h["low"] <= other["ours"] <= h["high"])
                holds[i] &= ok
                marks.append("yes" if ok else "**no**")
            else:
                marks.append("no interval")
        interval = f" ({h['interval']})" if h.get("interval") else ""
        lines.append(f"| {h['label']}{interval} | {_with_interval(h)} | {' | '.join(_with_interval(o) for o in row)} | "
                     f"{' / '.join(marks)} |")
    return lines, holds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+",
                        help="reports folders: the reference run (fp32) first, then the runs to check")
    parser.add_argument("--names", nargs="+", default=None, help="a name per folder (default: fp32, bf16 for two)")
    args = parser.parse_args()
    if len(args.folders) < 2:
        parser.error("give at least two reports folders")
    names = args.names or (["fp32", "bf16"] if len(args.folders) == 2 else [f.parent.name or str(f) for f in args.folders])
    if len(names) != len(args.folders):
        parser.error(f"{len(args.folders)} folders but {len(names)} names")
    for path in sorted(args.folders[0].glob("[0-9]*.json")):
        present = [(name, folder / path.name) for name, folder in zip(names, args.folders) if (folder / path.name).exists()]
        if len(present) < 2:
            continue
        reports = [json.loads(p.read_text()) for _, p in present]
        lines, holds = compare(reports, [n for n, _ in present])
        walls = ", ".join(f"{n} {r.get('run card', {}).get('wall time (s)')} s" for (n, _), r in zip(present, reports))
        verdicts = "; ".join(f"{n} {'holds' if ok else 'does not hold'}" for (n, _), ok in zip(present[1:], holds))
        print(f"### {path.stem}: {verdicts} (wall time {walls})\n")
        print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
