#!/usr/bin/env python3
"""PyTorch's attention on bench-attn's shapes, printed as bench-attn's JSON lines, so both
land in one table and one plot.

- cpu: the naive attention people write in PyTorch (q k^T, causal mask, softmax, @ v: scores
  and probabilities materialised), the peer the issue measured with Debian's torch 1.13; and
  torch's scaled_dot_product_attention where it exists (torch >= 2.0).
- cuda: scaled_dot_product_attention pinned to one backend at a time (flash = FlashAttention-2,
  cudnn = cuDNN's fused attention, efficient = xformers' memory-efficient kernel) and the
  naive formulation, in bf16/fp16, timed with CUDA events.

Shapes follow bench-attn: batch = max(1, tokens // seq_len) rows of seq_len tokens, `heads`
query heads of head_dim (no grouping), dense rows only (SDPA has no varlen input). FLOPs use
FlashAttention's convention (forward 4 b s^2 h d, halved when causal; backward 2.5x forward).
Timing: warm-up, then repeats, median; forward inputs rotate through copies larger than
--rotate-bytes in all (like bench-attn), a backward re-runs autograd on a retained graph.

Usage: scripts/bench/torch_attention.py --device cpu --seq-lens 512,1024 --head-dims 64 --heads 4
       [--tokens 8192] [--causal true,false] [--modes fwd,bwd,fwd_bwd] [--impls naive,sdpa]
       [--dtype fp32|bf16|fp16] [--threads 2] [--warmup 1] [--repeats 5] > rows.jsonl
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch


def flag_list(text, kind):
    items = [t.strip() for t in text.split(",") if t.strip()]
    if kind is bool:
        return [t == "true" for t in items]
    return [kind(t) for t in items]


_masks = {}


def naive_attention(q, k, v, causal):
    """nanoGPT's formulation: q, k, v [b, h, s, d]; the causal mask is built once per shape
    (nanoGPT registers it as a buffer), scores masked in place when no gradient flows."""
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        s = q.shape[-2]
        key = (s, q.device)
        if key not in _masks:
            _masks.clear()
            _masks[key] = torch.ones(s, s, dtype=torch.bool, device=q.device).triu(1)
        if scores.requires_grad:
            scores = scores.masked_fill(_masks[key], float("-inf"))
        else:
            scores.masked_fill_(_masks[key], float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


def sdpa_backends():
    """name -> context manager factory pinning SDPA to that backend (torch >= 2.0)."""
    if not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        return {}
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # torch >= 2.3

        names = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
                 "math": "MATH"}
        return {n: (lambda b=getattr(SDPBackend, a): sdpa_kernel(b)) for n, a in names.items() if hasattr(SDPBackend, a)}
    except ImportError:
        ctx = torch.backends.cuda.sdp_kernel
        return {"flash": lambda: ctx(enable_flash=True, enable_math=False, enable_mem_efficient=False),
                "efficient": lambda: ctx(enable_flash=False, enable_math=False, enable_mem_efficient=True),
                "math": lambda: ctx(enable_flash=False, enable_math=True, enable_mem_efficient=False)}


class Timer:
    def __init__(self, device):
        self.cuda = device == "cuda"

    def run(self, fn, before, warmup, repeats):
        times = []
        for i in range(warmup + repeats):
            before()
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                ms = start.elapsed_time(end)
            else:
                t0 = time.perf_counter()
                fn()
                ms = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                times.append(ms)
        return times


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"])
    p.add_argument("--seq-lens", default="512,1024,2048,4096,8192")
    p.add_argument("--head-dims", default="64")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--causal", default="true")
    p.add_argument("--modes", default="fwd,bwd")
    p.add_argument("--impls", default=None, help="naive,sdpa (cpu); flash,cudnn,efficient,naive (cuda)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rotate-bytes", type=float, default=256 * 2**20)
    p.add_argument("--max-naive-bytes", type=float, default=8 * 2**30)
    a = p.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dtype_name = a.dtype or ("fp32" if a.device == "cpu" else "bf16")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    impls = flag_list(a.impls or ("naive,sdpa" if a.device == "cpu" else "flash,cudnn,naive"), str)
    backends = sdpa_backends()
    if a.device == "cuda":
        label = torch.cuda.get_device_name(0)
    else:
        label = f"cpu ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''})"
    timer = Timer(a.device)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def emit(row):
        print(json.dumps(row), flush=True)

    for d in flag_list(a.head_dims, int):
        for causal in flag_list(a.causal, bool):
            for s in flag_list(a.seq_lens, int):
                b, h = max(1, a.tokens // s), a.heads
                fwd_flops = 4.0 * b * s * s * h * d / (2 if causal else 1)
                shape = [b, h, s, d]
                one = 4 * math.prod(shape) * (2 if dtype != torch.float32 else 4)  # q, k, v, out
                copies = max(1, min(16, math.ceil(a.rotate_bytes / one)))
                inputs = [[(torch.rand(shape, generator=gen) * 2 - 1).to(a.device, dtype) for _ in range(3)]
                          for _ in range(copies)]
                dout = (torch.rand(shape, generator=gen) * 2 - 1).to(a.device, dtype)
                for impl in impls:
                    name = "torch-" + impl
                    if impl == "naive" or (impl == "sdpa" and a.device == "cpu"):
                        if impl == "naive":
                            fn = lambda q, k, v: naive_attention(q, k, v, causal)  # noqa: E731
                        elif not backends:
                            continue  # torch < 2.0: no SDPA
                        else:
                            fn = lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(  # noqa: E731
                                q, k, v, is_causal=causal)
                        ctx = None
                    else:
                        if impl not in backends:
                            print(f"torch_attention: no SDPA backend '{impl}' in torch {torch.__version__}",
                                  file=sys.stderr)
                            continue
                        fn = lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(  # noqa: E731
                            q, k, v, is_causal=causal)
                        ctx = backends[impl]
                    for mode in flag_list(a.modes, str):
                        row = {"impl": name, "device": label, "dtype": dtype_name, "seq_len": s, "batch": b,
                               "tokens": b * s, "docs": b, "heads": h, "kv_heads": h, "head_dim": d,
                               "causal": causal, "layout": "dense", "mode": mode, "ms": None, "ms_min": None,
                               "ms_max": None, "repeats": 0, "tflops": None, "memory_bytes": 0,
                               "max_abs_err": None, "rel_err": None, "naive_err": None, "error_ok": True,
                               "checked_rows": 0, "checked_columns": 0, "speedup_vs_naive": None, "skipped": None}
                        if impl == "naive" and 2 * b * h * s * s * 4 > a.max_naive_bytes:
                            row["skipped"] = "scores and probabilities exceed --max-naive-bytes"
                            emit(row)
                            continue
                        try:
                            times, peak = run_mode(a, timer, fn, ctx, inputs, dout, mode)
                        except RuntimeError as e:  # a backend that refuses the shape or dtype
                            row["skipped"] = str(e).splitlines()[0][:200]
                            emit(row)
                            continue
                        ms = statistics.median(times)
                        flops = fwd_flops * {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}[mode]
                        row.update(ms=ms, ms_min=min(times), ms_max=max(times), repeats=len(times),
                                   tflops=flops / (ms * 1e-3) * 1e-12, memory_bytes=peak)
                        emit(row)
                del inputs, dout
                if a.device == "cuda":
                    torch.cuda.empty_cache()


def run_mode(a, timer, fn, ctx, inputs, dout, mode):
    import contextlib

    cuda = a.device == "cuda"
    with (ctx() if ctx else contextlib.nullcontext()):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        if mode == "fwd":
            state = {"i": 0}

            def step():
                q, k, v = inputs[state["i"] % len(inputs)]
                state["i"] += 1
                with torch.no_grad():
                    fn(q, k, v)

            times = timer.run(step, lambda: None, a.warmup, a.repeats)
        else:
            q, k, v = [t.detach().clone().requires_grad_(True) for t in inputs[0]]
            if mode == "bwd":
                out = fn(q, k, v)

                def clear():
                    q.grad = k.grad = v.grad = None

                times = timer.run(lambda: out.backward(dout, retain_graph=True), clear, a.warmup, a.repeats)
            else:
                def clear():
                    q.grad = k.grad = v.grad = None

                times = timer.run(lambda: fn(q, k, v).backward(dout), clear, a.warmup, a.repeats)
        peak = torch.cuda.max_memory_allocated() - base if cuda else None  # cpu: not measured
    return times, peak


if __name__ == "__main__":
    main()
