#!/usr/bin/env python3
"""Writes tests/data/reference/{gpt2,llama}_tiny.safetensors: a tiny GPT-2 and a tiny Llama
with their weights, one packed (varlen) batch, and what float64 PyTorch computes for them:
the loss, every parameter gradient, and the losses of three AdamW steps.

The models are written out in plain torch (no transformers), following Hugging Face's
GPT2LMHeadModel and LlamaForCausalLM math and tensor names. Weights are stored as F32; every
computation here uses those float32-rounded values promoted to float64, so a C++ fp32
implementation is compared against the exact result for the weights it loads.

Checks run before anything is written (the script fails otherwise): loss near ln(V) at
init, every gradient finite and non-zero where it must be, central finite differences
against autograd for a few entries, and the packed loss equal to the per-document losses
computed one document at a time (mask and position ids are right).

Usage: python3 scripts/reference/make_train_reference.py [OUT_DIR]
       (default tests/data/reference; running it twice gives identical bytes. float64 GEMMs go
       to the BLAS behind libblas.so.3, so another BLAS changes the last bits, ~1e-14
       relative: the committed files were made with Debian's OpenBLAS 0.3.21)
"""
import json
import math
import pathlib
import struct
import sys

import torch

torch.set_num_threads(1)  # float64 sums in one fixed order: byte-identical reruns
DT = torch.float64

GPT2 = dict(arch="gpt2", vocab_size=320, hidden_size=64, num_layers=2, num_heads=4,
            intermediate_size=256, max_position_embeddings=128, tie_embeddings=True,
            norm_eps=1e-5, activation="gelu_tanh")
LLAMA = dict(arch="llama", vocab_size=320, hidden_size=64, num_layers=2, num_heads=4,
             num_kv_heads=2, head_dim=16, intermediate_size=172, tie_embeddings=False,
             norm_eps=1e-5, rope_theta=10000.0, activation="silu")

# Two rows of 48 token slots, flattened: documents of 5, 30 and 13 tokens, then one of 48.
ROW_LENGTH = 48
DOC_LENGTHS = [5, 30, 13, 48]
TOKEN_LIMIT = 300            # ids in [0, 300): the top of the vocabulary is never a target
LOSS_MASK_ZEROS = [2, 9, 20, 47, 60, 61, 83]  # includes a document's last token (47)
ADAMW = dict(lr=1e-2, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1, clip_grad_norm=1.0,
             steps=3)
WEIGHT_SEED, BATCH_SEED = 1234, 5678


# ---------------------------------------------------------------------------- weights
def _randn(gen, shape, std):
    return torch.randn(shape, generator=gen, dtype=DT) * std


def _store_precision(params):
    """Rounds every weight to float32 (what the file holds), back to float64 for the math."""
    return {k: v.to(torch.float32).to(DT) for k, v in params.items()}


def init_gpt2(cfg, gen):
    V, C, P, F = (cfg["vocab_size"], cfg["hidden_size"], cfg["max_position_embeddings"],
                  cfg["intermediate_size"])
    p = {"transformer.wte.weight": _randn(gen, (V, C), 0.02),
         "transformer.wpe.weight": _randn(gen, (P, C), 0.02)}
    for i in range(cfg["num_layers"]):
        h = f"transformer.h.{i}."
        # Conv1D weights are [in, out]: y = x @ W + b. Biases and norms are perturbed away from
        # their HF init (0 and 1) so a bug that ignores them changes the loss.
        p[h + "ln_1.weight"] = 1 + _randn(gen, (C,), 0.1)
        p[h + "ln_1.bias"] = _randn(gen, (C,), 0.1)
        p[h + "attn.c_attn.weight"] = _randn(gen, (C, 3 * C), 0.02)
        p[h + "attn.c_attn.bias"] = _randn(gen, (3 * C,), 0.02)
        p[h + "attn.c_proj.weight"] = _randn(gen, (C, C), 0.02)
        p[h + "attn.c_proj.bias"] = _randn(gen, (C,), 0.02)
        p[h + "ln_2.weight"] = 1 + _randn(gen, (C,), 0.1)
        p[h + "ln_2.bias"] = _randn(gen, (C,), 0.1)
        p[h + "mlp.c_fc.weight"] = _randn(gen, (C, F), 0.02)
        p[h + "mlp.c_fc.bias"] = _randn(gen, (F,), 0.02)
        p[h + "mlp.c_proj.weight"] = _randn(gen, (F, C), 0.02)
        p[h + "mlp.c_proj.bias"] = _randn(gen, (C,), 0.02)
    p["transformer.ln_f.weight"] = 1 + _randn(gen, (C,), 0.1)
    p["transformer.ln_f.bias"] = _randn(gen, (C,), 0.1)
    return _store_precision(p)


def init_llama(cfg, gen):
    V, C, F = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    Hq, Hkv, D = cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"]
    p = {"model.embed_tokens.weight": _randn(gen, (V, C), 0.02)}
    for i in range(cfg["num_layers"]):
        h = f"model.layers.{i}."
        # nn.Linear weights are [out, in]: y = x @ W^T.
        p[h + "input_layernorm.weight"] = 1 + _randn(gen, (C,), 0.1)
        p[h + "self_attn.q_proj.weight"] = _randn(gen, (Hq * D, C), 0.02)
        p[h + "self_attn.k_proj.weight"] = _randn(gen, (Hkv * D, C), 0.02)
        p[h + "self_attn.v_proj.weight"] = _randn(gen, (Hkv * D, C), 0.02)
        p[h + "self_attn.o_proj.weight"] = _randn(gen, (C, Hq * D), 0.02)
        p[h + "post_attention_layernorm.weight"] = 1 + _randn(gen, (C,), 0.1)
        p[h + "mlp.gate_proj.weight"] = _randn(gen, (F, C), 0.02)
        p[h + "mlp.up_proj.weight"] = _randn(gen, (F, C), 0.02)
        p[h + "mlp.down_proj.weight"] = _randn(gen, (C, F), 0.02)
    p["model.norm.weight"] = 1 + _randn(gen, (C,), 0.1)
    p["lm_head.weight"] = _randn(gen, (V, C), 0.02)
    return _store_precision(p)


def decays(name, tensor):
    """AdamW weight decay: 2-D matrices that are not embeddings (lm_head decays)."""
    embeddings = ("transformer.wte.weight", "transformer.wpe.weight", "model.embed_tokens.weight")
    return tensor.dim() == 2 and name not in embeddings


# ---------------------------------------------------------------------------- batch
def make_batch(gen):
    T = sum(DOC_LENGTHS)
    assert T == 2 * ROW_LENGTH
    cu = [0]
    for n in DOC_LENGTHS:
        cu.append(cu[-1] + n)
    tokens = torch.randint(0, TOKEN_LIMIT, (T,), generator=gen, dtype=torch.int64)
    position_ids = torch.cat([torch.arange(n) for n in DOC_LENGTHS])
    targets = torch.full((T,), -1, dtype=torch.int64)
    for b, e in zip(cu[:-1], cu[1:]):
        targets[b:e - 1] = tokens[b + 1:e]  # the last token of a document predicts nothing
    loss_mask = torch.ones(T, dtype=torch.uint8)
    loss_mask[LOSS_MASK_ZEROS] = 0
    return dict(tokens=tokens, targets=targets, position_ids=position_ids,
                cu_seqlens=torch.tensor(cu, dtype=torch.int64), loss_mask=loss_mask)


def attention_allowed(cu_seqlens, T):
    """[T, T] bool: query i sees key j iff same document and j <= i (block-diagonal causal)."""
    doc = torch.zeros(T, dtype=torch.int64)
    for d in range(len(cu_seqlens) - 1):
        doc[cu_seqlens[d]:cu_seqlens[d + 1]] = d
    i = torch.arange(T)
    return (doc[:, None] == doc[None, :]) & (i[None, :] <= i[:, None])


def masked_loss(logits, targets, loss_mask):
    """Mean over tokens with target >= 0 and loss_mask = 1 of -log softmax(logits)[target]."""
    valid = (targets >= 0) & (loss_mask == 1)
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp[valid.nonzero().squeeze(1), targets[valid]]
    return nll.sum() / valid.sum()


def attention(q, k, v, allowed):
    """q [Hq, T, D], k/v [Hkv, T, D] -> [T, Hq*D]; kv head of q head h is h // (Hq/Hkv)."""
    Hq, T, D = q.shape
    group = Hq // k.shape[0]
    k = k.repeat_interleave(group, dim=0)
    v = v.repeat_interleave(group, dim=0)
    scores = (q @ k.transpose(1, 2)) / math.sqrt(D)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (torch.softmax(scores, dim=-1) @ v).transpose(0, 1).reshape(T, Hq * D)


# ---------------------------------------------------------------------------- models
def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased, as torch.nn.LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu_tanh(x):  # HF NewGELUActivation / "gelu_new"
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gpt2_logits(p, cfg, batch):
    C, H, eps = cfg["hidden_size"], cfg["num_heads"], cfg["norm_eps"]
    tokens, pos = batch["tokens"], batch["position_ids"]
    T, D = tokens.shape[0], C // H
    allowed = attention_allowed(batch["cu_seqlens"], T)
    x = p["transformer.wte.weight"][tokens] + p["transformer.wpe.weight"][pos]
    for i in range(cfg["num_layers"]):
        h = f"transformer.h.{i}."
        a = layer_norm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps)
        qkv = a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]       # [T, 3C]
        q, k, v = (t.reshape(T, H, D).transpose(0, 1) for t in qkv.split(C, dim=1))
        y = attention(q, k, v, allowed)
        x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        m = layer_norm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps)
        m = gelu_tanh(m @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"])
        x = x + m @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    x = layer_norm(x, p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps)
    return x @ p["transformer.wte.weight"].T                                      # tied head


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def llama_logits(p, cfg, batch):
    Hq, Hkv, D, eps = cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"], cfg["norm_eps"]
    tokens, pos = batch["tokens"], batch["position_ids"]
    T = tokens.shape[0]
    allowed = attention_allowed(batch["cu_seqlens"], T)
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, D, 2, dtype=DT) / D))  # [D/2]
    angles = pos.to(DT)[:, None] * inv_freq[None, :]                               # [T, D/2]
    emb = torch.cat((angles, angles), dim=-1)                                      # [T, D]
    cos, sin = emb.cos(), emb.sin()
    x = p["model.embed_tokens.weight"][tokens]
    for i in range(cfg["num_layers"]):
        h = f"model.layers.{i}."
        a = rms_norm(x, p[h + "input_layernorm.weight"], eps)
        q = (a @ p[h + "self_attn.q_proj.weight"].T).reshape(T, Hq, D).transpose(0, 1)
        k = (a @ p[h + "self_attn.k_proj.weight"].T).reshape(T, Hkv, D).transpose(0, 1)
        v = (a @ p[h + "self_attn.v_proj.weight"].T).reshape(T, Hkv, D).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        x = x + attention(q, k, v, allowed) @ p[h + "self_attn.o_proj.weight"].T
        m = rms_norm(x, p[h + "post_attention_layernorm.weight"], eps)
        gate = m @ p[h + "mlp.gate_proj.weight"].T
        up = m @ p[h + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ p[h + "mlp.down_proj.weight"].T
    return rms_norm(x, p["model.norm.weight"], eps) @ p["lm_head.weight"].T


LOGITS = {"gpt2": gpt2_logits, "llama": llama_logits}


def loss_of(p, cfg, batch):
    return masked_loss(LOGITS[cfg["arch"]](p, cfg, batch), batch["targets"], batch["loss_mask"])


# ---------------------------------------------------------------------------- checks
def check_gradients(params, cfg, batch, loss, grads):
    V = cfg["vocab_size"]
    assert abs(loss - math.log(V)) < 0.1, f"{cfg['arch']}: loss {loss} far from ln(V)"
    P = batch["position_ids"].max().item() + 1
    for name, g in grads.items():
        assert torch.isfinite(g).all(), f"{name}: non-finite gradient"
        # Position rows from the longest document's last token on are legitimately zero (that
        # token has no target and nothing later attends to it); the rest must all have one.
        if name == "transformer.wpe.weight":
            assert (g[:P - 1].abs().sum(1) > 0).all() and (g[P - 1:] == 0).all(), name
        else:
            assert (g != 0).any(), f"{name}: gradient is all zero"
    # Central differences on the largest entry of a few tensors (h = 1e-5: truncation
    # ~h^2, rounding ~1e-16/h, both far below the 1e-6 relative tolerance).
    names = [n for n in params if n.endswith(("weight", "bias"))]
    picks = [names[0], names[3], names[4], names[-2], names[len(names) // 2]]
    for name in picks:
        idx = grads[name].abs().argmax().item()
        h = 1e-5
        plus = {k: v.clone() for k, v in params.items()}
        minus = {k: v.clone() for k, v in params.items()}
        plus[name].view(-1)[idx] += h
        minus[name].view(-1)[idx] -= h
        with torch.no_grad():
            fd = (loss_of(plus, cfg, batch) - loss_of(minus, cfg, batch)).item() / (2 * h)
        ad = grads[name].view(-1)[idx].item()
        assert abs(fd - ad) <= 1e-6 * abs(ad) + 1e-12, f"{name}[{idx}]: fd {fd} vs autograd {ad}"
    # Packing: the packed loss equals the same tokens' losses computed one document at a time.
    cu = batch["cu_seqlens"].tolist()
    total, count = 0.0, 0
    with torch.no_grad():
        for b, e in zip(cu[:-1], cu[1:]):
            doc = {k: v[b:e] for k, v in batch.items() if k != "cu_seqlens"}
            doc["cu_seqlens"] = torch.tensor([0, e - b])
            n = int(((doc["targets"] >= 0) & (doc["loss_mask"] == 1)).sum())
            if n:
                total += loss_of(params, cfg, doc).item() * n
                count += n
    assert abs(total / count - loss) < 1e-12, f"packed {loss} vs per-document {total / count}"


# ---------------------------------------------------------------------------- compute
def compute(cfg, params, batch):
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = loss_of(leaves, cfg, batch)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in leaves.items()}
    check_gradients(params, cfg, batch, loss.item(), grads)

    # AdamW exactly as torch.optim.AdamW, constant lr, global-norm clipping before each step.
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    decay = [v for k, v in leaves.items() if decays(k, v)]
    no_decay = [v for k, v in leaves.items() if not decays(k, v)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]), eps=ADAMW["eps"])
    losses, norms = [], []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad(set_to_none=True)
        step_loss = loss_of(leaves, cfg, batch)
        step_loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(list(leaves.values()),
                                                    ADAMW["clip_grad_norm"]).item())
        losses.append(step_loss.item())
        opt.step()
    with torch.no_grad():
        final = loss_of(leaves, cfg, batch).item()
    assert losses[0] == loss.item() and final < losses[-1] < losses[0], (losses, final)
    return loss.item(), grads, losses, norms, final


# ---------------------------------------------------------------------------- safetensors
ST_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.int32: "I32", torch.uint8: "U8"}


def write_safetensors(path, tensors, metadata):
    """u64 LE header length N, JSON header padded with spaces to a multiple of 8, then the
    tensors back to back. Ordered as the safetensors library does (larger dtypes first, then
    by name) so every tensor is aligned to its element size."""
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in order:
        t = tensors[name].contiguous()
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def build(cfg, init, out_dir):
    params = init(cfg, torch.Generator().manual_seed(WEIGHT_SEED))
    batch = make_batch(torch.Generator().manual_seed(BATCH_SEED))
    loss, grads, losses, norms, final = compute(cfg, params, batch)

    tensors = {k: v.to(torch.float32) for k, v in params.items()}
    for k in ("tokens", "targets", "position_ids", "cu_seqlens"):
        tensors["batch." + k] = batch[k].to(torch.int32)
    tensors["batch.loss_mask"] = batch["loss_mask"]
    tensors["expected.loss"] = torch.tensor([loss], dtype=DT)
    for k, g in grads.items():
        tensors["expected.grad." + k] = g
    tensors["expected.adamw_losses"] = torch.tensor(losses, dtype=DT)
    tensors["expected.adamw_grad_norms"] = torch.tensor(norms, dtype=DT)
    tensors["expected.adamw_final_loss"] = torch.tensor([final], dtype=DT)

    metadata = {
        "config": json.dumps(cfg, sort_keys=True),
        "batch": json.dumps({"rows": 2, "row_length": ROW_LENGTH, "doc_lengths": DOC_LENGTHS,
                             "token_limit": TOKEN_LIMIT, "loss_mask_zeros": LOSS_MASK_ZEROS}),
        "adamw": json.dumps(dict(ADAMW, schedule="constant", decay="2-D non-embedding weights "
                                 "(lm_head decays; norms, biases, wte/wpe/embed_tokens do not)",
                                 clip="coef = min(1, max_norm / (total_norm + 1e-6)) as "
                                      "torch.nn.utils.clip_grad_norm_",
                                 update="torch.optim.AdamW: p *= 1 - lr*wd; "
                                        "p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)")),
        "generated_by": "scripts/reference/make_train_reference.py (float64 PyTorch "
                        f"{torch.__version__.split('+')[0]}, Hugging Face "
                        f"{'GPT2LMHeadModel' if cfg['arch'] == 'gpt2' else 'LlamaForCausalLM'}"
                        f" math; weight seed {WEIGHT_SEED}, batch seed {BATCH_SEED})",
        "contents": "weights F32 (HF names; the reference math uses these float32 values in "
                    "float64); batch.* I32/U8 flattened over both rows; expected.loss; "
                    "expected.grad.<name> F64 for every weight; expected.adamw_losses: loss "
                    "before each of 3 AdamW steps (the first is expected.loss); "
                    "expected.adamw_grad_norms: global grad norm before clipping at each step; "
                    "expected.adamw_final_loss: loss after the third step",
    }
    path = out_dir / f"{cfg['arch']}_tiny.safetensors"
    write_safetensors(path, tensors, metadata)
    print(f"{path}: {path.stat().st_size:,} bytes; loss {loss:.12f}; AdamW losses "
          + ", ".join(f"{x:.12f}" for x in losses) + f"; after 3 steps {final:.12f}")


def main():
    root = pathlib.Path(__file__).resolve().parents[2]
    out_dir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root / "tests/data/reference"
    out_dir.mkdir(parents=True, exist_ok=True)
    build(GPT2, init_gpt2, out_dir)
    build(LLAMA, init_llama, out_dir)


if __name__ == "__main__":
    main()
