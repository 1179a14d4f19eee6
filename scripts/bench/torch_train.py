#!/usr/bin/env python3
"""PyTorch side of scripts/bench-train.sh: trains a GPT-2 or Llama decoder in fp32 on the CPU
with the math of Hugging Face's GPT2LMHeadModel / LlamaForCausalLM (same tensor names), on
random tokens in full-length single-document rows, and prints one JSON object with the median
step time and tokens/s over the timed steps.

Written to be the fastest plain PyTorch 1.13 (Debian's python3-torch) on this machine: fused
ATen ops where one exists (addmm with bias, layer_norm, tanh-GELU, cross-entropy), attention
as baddbmm (scale and causal mask in the GEMM's epilogue) -> softmax -> bmm (1.13 has no
public scaled_dot_product_attention; its private F._scaled_dot_product_attention is the same
math with an extra scale pass and mask build, --attention sdpa selects it); grouped-query
attention by folding the query group into the row dimension instead of copying K and V;
AdamW with foreach kernels; zero_grad(set_to_none=True). GEMMs go to the BLAS that
libblas.so.3 resolves to: run it under OpenBLAS with OPENBLAS_CORETYPE=SkylakeX (as
bench-train.sh does); Debian's reference BLAS is tens of times slower.

Step = forward + backward + clip_grad_norm_(1.0) + AdamW step, as llmlab's train step.
FLOP convention (the one bench-train.sh uses for both sides): training FLOPs per token =
6*N + 6*L*T*C, N = parameters that multiply activations (all but lookup-only embeddings: wpe,
and embed_tokens when untied; a tied wte counts once, as the head), 6*L*T*C = causal
attention (QK^T and PV, 4*T*C forward per layer and token, x3 for fwd+bwd, halved for the
causal mask as FlashAttention's benchmarks count it).

Usage: torch_train.py --arch gpt2 --vocab 50257 --hidden 768 --layers 12 --heads 12
                      --intermediate 3072 --positions 1024 --batch 4 --seq 64 --steps 10
"""
import argparse
import json
import math
import os
import statistics
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=["gpt2", "llama"], required=True)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--kv-heads", type=int, default=None, help="llama; default --heads")
    p.add_argument("--intermediate", type=int, default=None, help="default 4*hidden")
    p.add_argument("--positions", type=int, default=1024, help="gpt2 learned positions")
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--attention", choices=["manual", "sdpa"], default="manual")
    a = p.parse_args()
    a.kv_heads = a.kv_heads or a.heads
    a.intermediate = a.intermediate or 4 * a.hidden
    return a


ARGS = parse_args()
# OpenBLAS and OpenMP size their pools when the library loads: set them before torch does.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, str(ARGS.threads))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402


class Conv1D(nn.Module):
    """HF GPT-2's Conv1D: weight [in, out], y = x @ W + b (one addmm, bias fused)."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(
            *x.shape[:-1], -1)


def causal_attention(q, k, v, mask, impl):
    """q [B, Hq, T, D], k/v [B, Hkv, T, D] -> [B, T, Hq*D]. mask: additive [G*T, T], the
    causal mask tiled G = Hq/Hkv times: the G query heads sharing a KV head are stacked as
    G*T rows of one GEMM (q head h uses kv head h // G), so K and V are never copied."""
    B, Hq, T, D = q.shape
    Hkv = k.shape[1]
    G = Hq // Hkv
    if impl == "sdpa":
        if G > 1:
            k = k[:, :, None].expand(B, Hkv, G, T, D).reshape(B, Hq, T, D)
            v = v[:, :, None].expand(B, Hkv, G, T, D).reshape(B, Hq, T, D)
        y, _ = F._scaled_dot_product_attention(q, k, v, None, 0.0, False, True)
    else:
        q = q.reshape(B * Hkv, G * T, D)  # heads h = kv*G + g are contiguous: a free view
        k = k.reshape(B * Hkv, T, D)
        v = v.reshape(B * Hkv, T, D)
        att = torch.baddbmm(mask, q, k.transpose(1, 2), alpha=1.0 / math.sqrt(D))
        y = torch.bmm(torch.softmax(att, dim=-1), v)
    return y.view(B, Hq, T, D).transpose(1, 2).reshape(B, T, Hq * D)


class GPT2Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        C = a.hidden
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.attn = nn.Module()
        self.attn.c_attn = Conv1D(C, 3 * C)
        self.attn.c_proj = Conv1D(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.mlp = nn.Module()
        self.mlp.c_fc = Conv1D(C, a.intermediate)
        self.mlp.c_proj = Conv1D(a.intermediate, C)
        self.H, self.impl = a.heads, a.attention

    def forward(self, x, mask):
        B, T, C = x.shape
        qkv = self.attn.c_attn(self.ln_1(x)).view(B, T, 3, self.H, C // self.H)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, D]
        x = x + self.attn.c_proj(causal_attention(q, k, v, mask, self.impl))
        m = F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.mlp.c_proj(m)


class GPT2(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(a.vocab, a.hidden)
        self.transformer.wpe = nn.Embedding(a.positions, a.hidden)
        self.transformer.h = nn.ModuleList(GPT2Block(a) for _ in range(a.layers))
        self.transformer.ln_f = nn.LayerNorm(a.hidden, eps=1e-5)
        self.lookup_only = [self.transformer.wpe.weight]
        mask = torch.full((a.seq, a.seq), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, tokens, targets):
        t = self.transformer
        x = t.wte(tokens) + t.wpe.weight[: tokens.shape[1]]
        for block in t.h:
            x = block(x, self.mask)
        logits = F.linear(t.ln_f(x), t.wte.weight)  # tied head
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


class RMSNorm(nn.Module):
    def __init__(self, C, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class LlamaLayer(nn.Module):
    def __init__(self, a):
        super().__init__()
        C, D = a.hidden, a.hidden // a.heads
        self.input_layernorm = RMSNorm(C)
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(C, a.heads * D, bias=False)
        self.self_attn.k_proj = nn.Linear(C, a.kv_heads * D, bias=False)
        self.self_attn.v_proj = nn.Linear(C, a.kv_heads * D, bias=False)
        self.self_attn.o_proj = nn.Linear(a.heads * D, C, bias=False)
        self.post_attention_layernorm = RMSNorm(C)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(C, a.intermediate, bias=False)
        self.mlp.up_proj = nn.Linear(C, a.intermediate, bias=False)
        self.mlp.down_proj = nn.Linear(a.intermediate, C, bias=False)
        self.Hq, self.Hkv, self.D, self.impl = a.heads, a.kv_heads, D, a.attention

    def forward(self, x, mask, cos, sin):
        B, T, _ = x.shape
        s = self.self_attn
        h = self.input_layernorm(x)
        q = s.q_proj(h).view(B, T, self.Hq, self.D).transpose(1, 2)
        k = s.k_proj(h).view(B, T, self.Hkv, self.D).transpose(1, 2)
        v = s.v_proj(h).view(B, T, self.Hkv, self.D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        x = x + s.o_proj(causal_attention(q, k, v.contiguous(), mask, self.impl))
        h = self.post_attention_layernorm(x)
        return x + self.mlp.down_proj(F.silu(self.mlp.gate_proj(h)) * self.mlp.up_proj(h))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(a.vocab, a.hidden)
        self.model.layers = nn.ModuleList(LlamaLayer(a) for _ in range(a.layers))
        self.model.norm = RMSNorm(a.hidden)
        self.lm_head = nn.Linear(a.hidden, a.vocab, bias=False)
        self.lookup_only = [self.model.embed_tokens.weight]
        D = a.hidden // a.heads
        inv_freq = 1.0 / (a.rope_theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
        angles = torch.arange(a.seq, dtype=torch.float32)[:, None] * inv_freq[None, :]
        emb = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        mask = torch.full((a.seq, a.seq), float("-inf")).triu(1)
        self.register_buffer("mask", mask.repeat(a.heads // a.kv_heads, 1), persistent=False)

    def forward(self, tokens, targets):
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x, self.mask, self.cos, self.sin)
        logits = self.lm_head(self.model.norm(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def init_weights(model):
    """HF-style init: matrices and embeddings N(0, 0.02), biases 0, norms 1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)


def flops_per_token(model, a):
    n = sum(p.numel() for p in model.parameters())
    n_matmul = n - sum(p.numel() for p in model.lookup_only)
    return n, n_matmul, 6 * n_matmul + 6 * a.layers * a.seq * a.hidden


def main():
    a = ARGS
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = (GPT2 if a.arch == "gpt2" else Llama)(a)
    init_weights(model)
    params, n_matmul, fpt = flops_per_token(model, a)
    decay = [p for n, p in model.named_parameters()
             if p.dim() == 2 and not any(p is q for q in model.lookup_only)
             and not n.endswith(("wte.weight", "embed_tokens.weight"))]
    other = [p for p in model.parameters() if not any(p is q for q in decay)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8,
                            foreach=True)  # 1.13 has no fused CPU AdamW
    gen = torch.Generator().manual_seed(a.seed)
    times, cpu, losses = [], [], []
    for step in range(a.warmup + a.steps):
        data = torch.randint(0, a.vocab, (a.batch, a.seq + 1), generator=gen)
        tokens, targets = data[:, :-1], data[:, 1:].contiguous()
        t0, c0 = time.perf_counter(), time.process_time()
        loss = model(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        losses.append(loss.item())
        if step >= a.warmup:
            times.append(dt)
            cpu.append(dc)
    step_s = statistics.median(times)
    print(json.dumps({
        "arch": a.arch, "batch": a.batch, "seq": a.seq, "threads": a.threads,
        "steps": a.steps, "warmup": a.warmup, "attention": a.attention,
        "params": params, "matmul_params": n_matmul, "flops_per_token": fpt,
        "tokens_per_second": a.batch * a.seq / step_s, "step_seconds": step_s,
        "step_seconds_all": [round(t, 4) for t in times],
        # CPU seconds of this process per step (all threads): on a machine shared with other
        # work, cpu/step over threads*step_seconds shows how much of the machine it got.
        "cpu_seconds_per_step": statistics.median(cpu),
        "first_loss": losses[0], "last_loss": losses[-1],
        "torch": torch.__version__, "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }))


if __name__ == "__main__":
    main()
