#!/usr/bin/env python3
"""A short table from bench-attn and torch_attention.py JSON lines: per shape and mode, each
implementation's rate (GFLOP/s on the CPU, TFLOP/s on a GPU; "flash" is the CUDA flash kernel
bench-attn picked (sm90 forward on Hopper), "flash-sm80" its FlashAttention-2-class forward,
"flash-det" the deterministic backward; layout "veq": varlen rows of equal documents) side by side, then flash's ratio
to the naive kernel and to each torch implementation, and (with --sgemm) to the machine's
sgemm ceiling. Rows whose error broke bench-attn's rule are flagged.

Usage: scripts/bench/attn_summary.py [--sgemm GFLOPS] ROWS.jsonl [MORE.jsonl ...]
"""
import argparse
import json
from collections import defaultdict


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sgemm", type=float, default=0, help="the machine's sgemm ceiling, GFLOP/s")
    p.add_argument("rows", nargs="+")
    a = p.parse_args()
    rows = []
    for path in a.rows:
        try:
            with open(path) as f:
                rows += [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            print(f"(missing: {path})")
    if not rows:
        print("no rows")
        return
    cpu = all(r["device"].startswith("cpu") for r in rows)
    scale, unit = (1e3, "GFLOP/s") if cpu else (1.0, "TFLOP/s")
    table = defaultdict(dict)
    bad = []
    def equal_docs(r):  # varlen rows of equal documents (bench.doc_lengths: equal)
        return r["layout"] == "varlen" and r.get("max_doc_len") and r["docs"] * r["max_doc_len"] == r["tokens"]

    for r in rows:
        heads = f"{r['heads']}/{r['kv_heads']}" if r.get("kv_heads", r["heads"]) != r["heads"] else str(r["heads"])
        layout = "veq" if equal_docs(r) else r["layout"]
        key = (r["head_dim"], heads, "causal" if r["causal"] else "full", layout, r["mode"], r["seq_len"])
        impl = r["impl"] + ("-sm80" if r.get("kernel") == "sm80" else "")
        impl += "-bulk" if "bulk-dq" in (r.get("kernel") or "") else ""
        impl += "-det" if r["impl"] == "flash" and r.get("deterministic") and not cpu else ""
        table[key][impl] = None if r.get("skipped") or not r.get("ms") else r["tflops"] * scale
        if not r.get("error_ok", True) and not r.get("skipped"):
            bad.append(f"{impl} {key}")
    impls = sorted({i for v in table.values() for i in v}, key=lambda i: (i.startswith("torch"), i != "flash", i))
    peers = [i for i in impls if i != "flash"]
    head = f"{'d':>4} {'h':>5} {'mask':<6} {'layout':<6} {'mode':<7} {'s':>6} " + " ".join(f"{i:>13}" for i in impls)
    head += "  " + " ".join(f"{'flash/' + i.replace('torch-', 't-'):>13}" for i in peers)
    if a.sgemm:
        head += f" {'flash/sgemm':>11}"
    print(f"rates in {unit}")
    print(head)
    for key in sorted(table, key=lambda k: (k[0], k[2], k[3], ["fwd", "bwd", "fwd_bwd"].index(k[4]), k[5])):
        v = table[key]
        line = f"{key[0]:>4} {key[1]:>5} {key[2]:<6} {key[3]:<6} {key[4]:<7} {key[5]:>6} "
        line += " ".join(f"{v[i]:>13.1f}" if v.get(i) else f"{'-':>13}" for i in impls)
        f = v.get("flash")
        line += "  " + " ".join(f"{f / v[i]:>12.2f}x" if f and v.get(i) else f"{'-':>13}" for i in peers)
        if a.sgemm:
            line += f" {f / a.sgemm:>10.0%}" if f else f" {'-':>11}"
        print(line)
    # Packing's cost: varlen rows of equal documents (layout veq) against dense rows of the
    # documents' length, same work (the goal: within 5%).
    dense = {(r["impl"], r.get("kernel"), r["head_dim"], r["heads"], r.get("kv_heads"), r["causal"], r["mode"],
              r["seq_len"]): r for r in rows if r["layout"] == "dense" and r.get("tflops") and not r.get("skipped")}
    pairs = []
    for r in rows:
        if equal_docs(r) and r.get("tflops") and not r.get("skipped"):
            d = dense.get((r["impl"], r.get("kernel"), r["head_dim"], r["heads"], r.get("kv_heads"), r["causal"],
                           r["mode"], r["max_doc_len"]))
            if d:
                pairs.append(f"{r['impl']} d={r['head_dim']} {'causal' if r['causal'] else 'full'} {r['mode']} "
                             f"docs of {r['max_doc_len']}: {r['tflops'] / d['tflops']:.3f}")
    if pairs:
        print("varlen of equal documents / dense of their length (rate ratio): " + "; ".join(pairs))
    if bad:
        print("ERROR RULE BROKEN: " + "; ".join(bad))


if __name__ == "__main__":
    main()
