"""Does bf16 hold? The verdicts and headline numbers of two renders of the same studies, side by side.

    make reproduce                                                   # fp32: copy reports/ to /tmp/fp32
    make reproduce NB=03_brain_ct_mri_cyclegan SET='train.precision=bf16'   # ... to /tmp/bf16
    .venv/bin/python benchmarks/precision_table.py /tmp/fp32 /tmp/bf16

For every notebook rendered in both folders it prints a markdown table: each claim's verdict in
both runs, and each headline number with its interval (the study's CI, or the spread it reports),
marking whether the second run's value lies inside the first run's interval. A study "holds" when
every verdict is the same and every headline with an interval stays inside it; the default profile
adopts bf16 only for studies that hold (issue 18).
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


def _with_interval(h: dict) -> str:
    if h.get("low") is None or h.get("high") is None:
        return _fmt(h["ours"])
    return f"{_fmt(h['ours'])} [{_fmt(h['low'])}, {_fmt(h['high'])}]"


def compare(a: dict, b: dict, names: tuple[str, str]) -> tuple[list[str], bool]:
    """Markdown lines comparing report ``a`` with report ``b``, and whether ``b`` holds."""
    lines, holds = [], True
    lines.append(f"| verdict | {names[0]} | {names[1]} | same |")
    lines.append("|---|---|---|---|")
    claims_b = {c["claim"]: c for c in b.get("claims", [])}
    for c in a.get("claims", []):
        other = claims_b.get(c["claim"])
        same = other is not None and other["supported"] == c["supported"]
        holds &= same
        lines.append(f"| {c['claim']} | {'supported' if c['supported'] else 'not supported'} | "
                     f"{'—' if other is None else ('supported' if other['supported'] else 'not supported')} | "
                     f"{'yes' if same else '**no**'} |")
    lines.append("")
    lines.append(f"| headline | {names[0]} | {names[1]} | {names[1]} inside {names[0]}'s interval |")
    lines.append("|---|---|---|---|")
    heads_b = {h["label"]: h for h in b.get("headlines", [])}
    for h in a.get("headlines", []):
        other = heads_b.get(h["label"])
        inside = "no interval"
        if other is None:
            inside, holds = "**missing**", False
        elif h.get("low") is not None and h.get("high") is not None and isinstance(other["ours"], (int, float)):
            ok = bool(h["low"] <= other["ours"] <= h["high"])
            holds &= ok
            inside = "yes" if ok else "**no**"
        interval = f" ({h['interval']})" if h.get("interval") else ""
        lines.append(f"| {h['label']}{interval} | {_with_interval(h)} | "
                     f"{'—' if other is None else _with_interval(other)} | {inside} |")
    return lines, holds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path, help="reports folder of the reference run (fp32)")
    parser.add_argument("second", type=Path, help="reports folder of the run to check (bf16)")
    parser.add_argument("--names", nargs=2, default=["fp32", "bf16"])
    args = parser.parse_args()
    for path in sorted(args.first.glob("[0-9]*.json")):
        other = args.second / path.name
        if not other.exists():
            continue
        a, b = json.loads(path.read_text()), json.loads(other.read_text())
        lines, holds = compare(a, b, tuple(args.names))
        wall = [r.get("run card", {}).get("wall time (s)") for r in (a, b)]
        print(f"### {path.stem}: {args.names[1]} {'holds' if holds else 'does not hold'} "
              f"(wall time {args.names[0]} {wall[0]} s, {args.names[1]} {wall[1]} s)\n")
        print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
