#!/usr/bin/env python3
"""Plots bench-attn results: TFLOP/s (GFLOP/s on the CPU) against sequence length, one line per
implementation, one panel per (mode, mask, layout, head dim) found in the rows.

Usage: scripts/plot-attn.py --out FIGURE.png [--title TEXT] ROWS.jsonl [MORE.jsonl ...]
Reads bench-attn's --json/--output lines and scripts/bench/torch_attention.py's (same fields).
Needs Debian's python3-matplotlib (scripts/setup.sh python3-matplotlib).
"""
import argparse
import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"plot-attn: {path}:{n}: not JSON: {e}")
    return [r for r in rows if r.get("ms") and not r.get("skipped")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="")
    p.add_argument("rows", nargs="+")
    a = p.parse_args()
    rows = read(a.rows)
    if not rows:
        sys.exit("plot-attn: no measured rows in " + ", ".join(a.rows))
    cpu = all(r["device"].startswith("cpu") for r in rows)
    scale, unit = (1e3, "GFLOP/s") if cpu else (1.0, "TFLOP/s")
    panels = defaultdict(lambda: defaultdict(list))
    for r in rows:
        panel = (r["mode"], "causal" if r["causal"] else "full", r["layout"], r["head_dim"])
        panels[panel][r["impl"]].append((r["seq_len"], r["tflops"] * scale))
    keys = sorted(panels, key=lambda k: (["fwd", "bwd", "fwd_bwd"].index(k[0]), k[1], k[2], k[3]))
    cols = min(3, len(keys))
    nrows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.8 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for impl, points in sorted(panels[key].items()):
            points.sort()
            ax.plot([s for s, _ in points], [t for _, t in points], marker="o", label=impl)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length")
        ax.set_ylabel(unit)
        ax.set_title("{} {} {} d={}".format(*key))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(a.title or f"attention on {rows[0]['device']} ({rows[0]['dtype']})")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"plot-attn: wrote {a.out}")


if __name__ == "__main__":
    main()
