#!/usr/bin/env python3
"""Generates the fixtures of `evaluate()` / `sparsify eval` (run by hand, never by tests).

  python3 -m venv /tmp/venv-eval && /tmp/venv-eval/bin/pip install torch transformers safetensors numpy
  /tmp/venv-eval/bin/python scripts/make-eval-fixtures.py [--fixtures test/fixtures]

For each tiny model of <fixtures>/model/models (six architectures) it writes, under <fixtures>/eval/<model>/:
  sae/<hook>/{cfg.json,sae.safetensors}          a random TopK SAE on a decoder block's output
  transcoder/<hook>/{cfg.json,sae.safetensors}   a random TopK transcoder on the second block's MLP
  expected.json                                  the metrics computed here, by transformers' forward with
                                                 the coder output spliced in by forward hooks
and <fixtures>/eval/tokens.json (the evaluated rows, [3, 16], shared by every model).

The metrics follow docs/eval.md: CE over the B*(T-1) next-token positions (HF's labels=input_ids
shift) kept when the *input* token is not excluded; KL(p_clean || p_other) over all B*T positions
kept when the token is not excluded; reconstruction/sparsity over the kept tokens; the splice
replaces the module output at every position. Each `cases` entry is one `exclude_tokens` setting.
Everything is accumulated in float64 from float32 model outputs.
"""
import argparse
import json
import math
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

MODELS = ["gpt2", "gpt_neox", "llama", "qwen2", "gemma", "gemma2"]
B, T = 3, 16
EXCLUDED_ID = 7
# The SAE of one model is Multi-TopK (the eval splices its k reconstruction), the transcoder of
# another has a skip connection.
MULTI_TOPK = {"llama"}
SKIP = {"gpt_neox"}
NUM_LATENTS = 128
K = 8
HIST_LO, HIST_HI, HIST_WIDTH = -7.0, 0.0, 0.5


def hooks_of(name):
    blocks = "h" if name == "gpt2" else "layers"
    return f"{blocks}.0", f"{blocks}.1.mlp"


def make_coder(d, transcode, multi_topk, skip, gen):
    w_enc = (torch.rand(NUM_LATENTS, d, generator=gen) * 2 - 1) / math.sqrt(d)
    b_enc = torch.randn(NUM_LATENTS, generator=gen) * 0.02
    w_dec = torch.randn(NUM_LATENTS, d, generator=gen)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    if transcode:
        w_dec = w_dec * 0.3
    b_dec = torch.randn(d, generator=gen) * 0.05
    t = {"encoder.weight": w_enc, "encoder.bias": b_enc, "W_dec": w_dec, "b_dec": b_dec}
    if skip:
        t["W_skip"] = torch.randn(d, d, generator=gen) * 0.05
    cfg = {"activation": "topk", "expansion_factor": 32, "normalize_decoder": not transcode, "num_latents": NUM_LATENTS,
           "k": K, "multi_topk": multi_topk, "skip_connection": skip, "transcode": transcode, "d_in": d}
    return cfg, t


def save_coder(folder, cfg, tensors):
    os.makedirs(folder, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, "sae.safetensors"))
    with open(os.path.join(folder, "cfg.json"), "w") as f:
        json.dump(cfg, f)


def encode(cfg, t, x):
    """sparsify's SparseCoder.encode: top-k of relu(W_enc (x - b_dec) + b_enc) (no b_dec for transcoders)."""
    xin = x if cfg["transcode"] else x - t["b_dec"]
    pre = torch.relu(xin @ t["encoder.weight"].T + t["encoder.bias"])
    return pre.topk(cfg["k"], dim=-1)


def reconstruct(cfg, t, x):
    acts, idx = encode(cfg, t, x)
    out = (acts.unsqueeze(-1) * t["W_dec"][idx]).sum(-2) + t["b_dec"]
    if "W_skip" in t:
        out = out + x @ t["W_skip"].T
    return out, acts, idx


def first(out):
    return out[0] if isinstance(out, tuple) else out


def replace(out, new):
    return (new, *out[1:]) if isinstance(out, tuple) else new


def run(model, ids, splices):
    """Logits with forward hooks; splices: hook -> fn(module_input, module_output) -> replacement."""
    handles = []
    for hook, fn in splices.items():
        mod = model.base_model.get_submodule(hook)
        seen = {}
        handles.append(mod.register_forward_pre_hook(lambda _m, args, kwargs, seen=seen: seen.__setitem__(
            "x", args[0] if args else kwargs["hidden_states"]), with_kwargs=True))
        handles.append(mod.register_forward_hook(lambda _m, _i, out, fn=fn, seen=seen: replace(out, fn(seen["x"], first(out)))))
    with torch.inference_mode():
        logits = model(ids).logits
    for h in handles:
        h.remove()
    return logits.double()


def capture(model, ids, hook):
    got = {}
    mod = model.base_model.get_submodule(hook)
    h1 = mod.register_forward_pre_hook(lambda _m, args, kwargs: got.__setitem__("x", (args[0] if args else kwargs["hidden_states"]).clone()),
                                       with_kwargs=True)
    h2 = mod.register_forward_hook(lambda _m, _i, out: got.__setitem__("y", first(out).clone()))
    with torch.inference_mode():
        model(ids)
    h1.remove()
    h2.remove()
    return got["x"], got["y"]


def ce(logits, ids, keep):
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    m = keep[:, :-1]
    return float(nll[m].mean())


def kl(clean, other, keep):
    lp = torch.log_softmax(clean, dim=-1)
    lq = torch.log_softmax(other, dim=-1)
    per = (lp.exp() * (lp - lq)).sum(-1)
    return float(per[keep].mean())


def recon_metrics(y, yhat, acts, keep, num_latents):
    y = y.double().reshape(-1, y.shape[-1])[keep.reshape(-1)]
    yhat = yhat.double().reshape(-1, yhat.shape[-1])[keep.reshape(-1)]
    acts = acts.double().reshape(-1, acts.shape[-1])[keep.reshape(-1)]
    n = y.shape[0]
    sse = float(((yhat - y) ** 2).sum())
    total = float(((y - y.mean(0)) ** 2).sum())
    fvu = sse / total
    ny, nh = y.norm(dim=1), yhat.norm(dim=1)
    cos = (y * yhat).sum(1) / (ny * nh)
    ratio = nh / torch.where(ny < 1e-4, torch.ones_like(ny), ny)
    return {
        "fvu": fvu,
        "explained_variance": 1 - fvu,
        "mse": sse / n,
        "cosine_similarity": float(cos.mean()),
        "l2_ratio": float(ratio.mean()),
        "l2_norm_in": float(ny.mean()),
        "l2_norm_out": float(nh.mean()),
        "relative_reconstruction_bias": float((nh ** 2).sum() / (y * yhat).sum()),
        "l0": float((acts != 0).sum(1).double().mean()),
        "l1": float(acts.abs().sum(1).mean()),
    }


def firing(acts, idx, keep, num_latents):
    keep = keep.reshape(-1)
    a = acts.reshape(-1, acts.shape[-1])[keep]
    i = idx.reshape(-1, idx.shape[-1])[keep]
    n = a.shape[0]
    counts = torch.zeros(num_latents, dtype=torch.float64)
    for r in range(n):
        for j in range(a.shape[1]):
            if a[r, j] != 0:
                counts[i[r, j]] += 1
    freq = counts / n
    edges = [HIST_LO + HIST_WIDTH * b for b in range(int((HIST_HI - HIST_LO) / HIST_WIDTH) + 1)]
    hist = [0] * (len(edges) - 1)
    for f in freq.tolist():
        if f <= 0:
            continue
        b = math.floor((math.log10(f) - HIST_LO) / HIST_WIDTH)
        hist[min(max(b, 0), len(hist) - 1)] += 1
    return {
        "dead_fraction": float((counts == 0).double().mean()),
        "dense_fraction": float((freq > 0.1).double().mean()),
        "firing_histogram": {"log10_edges": edges, "counts": hist},
    }


def scores(c):
    c["ce_loss_score"] = (c["ce_loss_zero_ablation"] - c["ce_loss_spliced"]) / (c["ce_loss_zero_ablation"] - c["ce_loss_clean"])
    c["delta_ce"] = c["ce_loss_spliced"] - c["ce_loss_clean"]
    c["kl_div_score"] = (c["kl_div_zero_ablation"] - c["kl_div_spliced"]) / c["kl_div_zero_ablation"]
    return c


def evaluate_case(model, ids, coders, exclude):
    keep = torch.ones_like(ids, dtype=torch.bool)
    for e in exclude:
        keep &= ids != e
    clean = run(model, ids, {})
    ce_clean = ce(clean, ids, keep)
    out = {"tokens": int(keep.sum()), "ce_loss_clean": ce_clean, "hookpoints": {}}
    for hook, (cfg, t) in coders.items():
        x, y = capture(model, ids, hook)
        xin = x if cfg["transcode"] else y
        yhat, acts, idx = reconstruct(cfg, t, xin)
        mean = y.reshape(-1, y.shape[-1])[keep.reshape(-1)].double().mean(0).float()
        spliced = run(model, ids, {hook: lambda xi, yo, cfg=cfg, t=t: reconstruct(cfg, t, xi if cfg["transcode"] else yo)[0]})
        zero = run(model, ids, {hook: lambda xi, yo: torch.zeros_like(yo)})
        mean_abl = run(model, ids, {hook: lambda xi, yo, mean=mean: mean.expand_as(yo).clone()})
        m = {
            "ce_loss_clean": ce_clean,
            "ce_loss_spliced": ce(spliced, ids, keep),
            "ce_loss_zero_ablation": ce(zero, ids, keep),
            "ce_loss_mean_ablation": ce(mean_abl, ids, keep),
            "kl_div_spliced": kl(clean, spliced, keep),
            "kl_div_zero_ablation": kl(clean, zero, keep),
            "kl_div_mean_ablation": kl(clean, mean_abl, keep),
        }
        scores(m)
        m.update(recon_metrics(y, yhat, acts, keep, NUM_LATENTS))
        m.update(firing(acts, idx, keep, NUM_LATENTS))
        out["hookpoints"][hook] = m
    # All coders at once: each hook sees the upstream splices (its own input/output in that run).
    all_fn = {h: (lambda xi, yo, cfg=cfg, t=t: reconstruct(cfg, t, xi if cfg["transcode"] else yo)[0]) for h, (cfg, t) in coders.items()}
    spliced = run(model, ids, all_fn)
    zero = run(model, ids, {h: (lambda xi, yo: torch.zeros_like(yo)) for h in coders})
    out["all"] = scores({
        "ce_loss_clean": ce_clean,
        "ce_loss_spliced": ce(spliced, ids, keep),
        "ce_loss_zero_ablation": ce(zero, ids, keep),
        "kl_div_spliced": kl(clean, spliced, keep),
        "kl_div_zero_ablation": kl(clean, zero, keep),
    })
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="test/fixtures")
    args = ap.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    ids = torch.randint(8, 1024, (B, T), generator=gen)
    # The excluded id at the first position, inside a row, and at the last position.
    ids[0, 0] = EXCLUDED_ID
    ids[1, 5] = EXCLUDED_ID
    ids[2, T - 1] = EXCLUDED_ID
    root = os.path.join(args.fixtures, "eval")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "tokens.json"), "w") as f:
        json.dump({"shape": [B, T], "input_ids": ids.flatten().tolist(), "excluded_id": EXCLUDED_ID}, f)
    for name in MODELS:
        model = AutoModelForCausalLM.from_pretrained(os.path.join(args.fixtures, "model", "models", name), dtype=torch.float32)
        model.eval()
        d = model.config.hidden_size
        sae_hook, tc_hook = hooks_of(name)
        folder = os.path.join(root, name)
        shutil.rmtree(folder, ignore_errors=True)
        coders = {}
        for kind, hook, transcode in (("sae", sae_hook, False), ("transcoder", tc_hook, True)):
            cfg, t = make_coder(d, transcode, (name in MULTI_TOPK) and not transcode, (name in SKIP) and transcode, gen)
            save_coder(os.path.join(folder, kind, hook), cfg, t)
            coders[hook] = (cfg, t)
        expected = {"model": name, "hookpoints": {"sae": sae_hook, "transcoder": tc_hook},
                    "cases": [{"exclude_tokens": ex, **evaluate_case(model, ids, coders, ex)} for ex in ([], [EXCLUDED_ID])]}
        with open(os.path.join(folder, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
        print(name, json.dumps({h: round(v["ce_loss_score"], 4) for h, v in expected["cases"][0]["hookpoints"].items()}))


if __name__ == "__main__":
    main()
