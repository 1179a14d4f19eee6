#!/usr/bin/env python3
"""Plots rl-train metrics: reward and accuracy (left) and mean response length (right)
against iteration, one line per run.

Usage: scripts/plot-rl.py --out FIGURE.png [--title TEXT] [--smooth N] LABEL=runs/x/metrics.jsonl ...
Needs Debian's python3-matplotlib (scripts/setup.sh python3-matplotlib).
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                o = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"plot-rl: {path}:{n}: not JSON: {e}")
            if "iteration" in o:
                rows.append(o)
    if not rows:
        sys.exit(f"plot-rl: {path}: no iteration records")
    return rows


def smooth(values, n):
    out = []
    for i in range(len(values)):
        window = values[max(0, i - n + 1): i + 1]
        out.append(sum(window) / len(window))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="LABEL=metrics.jsonl")
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--smooth", type=int, default=5, help="moving average over N iterations")
    a = p.parse_args()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for spec in a.runs:
        label, _, path = spec.partition("=")
        if not path:
            sys.exit(f"plot-rl: expected LABEL=PATH, got {spec!r}")
        rows = read(path)
        it = [r["iteration"] for r in rows]
        line, = left.plot(it, smooth([r["accuracy"] for r in rows], a.smooth), label=f"{label} accuracy")
        left.plot(it, smooth([r["reward_mean"] for r in rows], a.smooth), "--", color=line.get_color(), alpha=0.6,
                  label=f"{label} reward")
        right.plot(it, smooth([r["response_length_mean"] for r in rows], a.smooth), color=line.get_color(),
                   label=f"{label} all")
        right.plot(it, smooth([r["correct_length_mean"] for r in rows], a.smooth), ":", color=line.get_color(),
                   label=f"{label} correct")
    left.set_xlabel("iteration")
    left.set_ylabel(f"accuracy / reward (moving average of {a.smooth})")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    right.set_xlabel("iteration")
    right.set_ylabel("mean response length (tokens)")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    if a.title:
        fig.suptitle(a.title)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"plot-rl: wrote {a.out}")


if __name__ == "__main__":
    main()
