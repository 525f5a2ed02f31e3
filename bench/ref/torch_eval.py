"""The computation of `evaluate()` in PyTorch, for bench/eval.ts: transformers' forward with sparsify
coders spliced in by forward hooks. Per batch: the clean forward, per coder a spliced, a zero- and a
mean-ablated forward, then all coders at once and all zeroed (plus the first pass for the means);
CE and KL reduced per batch. Prints one JSON line {"seconds", "ce_clean", "ce_spliced": {...}}.

  python bench/ref/torch_eval.py <model dir> <coders dir> <tokens.json> <batch> <threads>
"""
import json
import math
import os
import sys
import time

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def load_coder(d):
    cfg = json.load(open(os.path.join(d, "cfg.json")))
    return cfg, load_file(os.path.join(d, "sae.safetensors"))


def reconstruct(cfg, t, x):
    xin = x if cfg.get("transcode") else x - t["b_dec"]
    acts, idx = torch.relu(xin @ t["encoder.weight"].T + t["encoder.bias"]).topk(cfg["k"], dim=-1)
    out = (acts.unsqueeze(-1) * t["W_dec"][idx]).sum(-2) + t["b_dec"]
    if "W_skip" in t:
        out = out + x @ t["W_skip"].T
    return out


def first(o):
    return o[0] if isinstance(o, tuple) else o


def run(model, ids, fns):
    hs = []
    for hook, fn in fns.items():
        mod = model.base_model.get_submodule(hook)
        seen = {}
        hs.append(mod.register_forward_pre_hook(lambda _m, a, k, seen=seen: seen.__setitem__("x", a[0] if a else k["hidden_states"]), with_kwargs=True))
        hs.append(mod.register_forward_hook(lambda _m, _i, o, fn=fn, seen=seen: (fn(seen["x"], first(o)), *o[1:]) if isinstance(o, tuple) else fn(seen["x"], o)))
    logits = model(ids).logits
    for h in hs:
        h.remove()
    return logits


def ce(logits, ids):
    return float(torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).double(), ids[:, 1:].flatten(), reduction="sum"))


def kl(clean, other):
    lp, lq = torch.log_softmax(clean.double(), -1), torch.log_softmax(other.double(), -1)
    return float((lp.exp() * (lp - lq)).sum())


def main():
    model_dir, coders_dir, tokens_path, batch, threads = sys.argv[1:6]
    torch.set_num_threads(int(threads))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok = json.load(open(tokens_path))
    rows, ctx = tok["shape"]
    ids_all = torch.tensor(tok["input_ids"]).reshape(rows, ctx)
    coders = {n: load_coder(os.path.join(coders_dir, n)) for n in sorted(os.listdir(coders_dir))}
    B = int(batch)
    t0 = time.perf_counter()
    with torch.inference_mode():
        means = {}
        for h in coders:
            got = []
            for lo in range(0, rows, B):
                mod = model.base_model.get_submodule(h)
                hk = mod.register_forward_hook(lambda _m, _i, o: got.append(first(o).reshape(-1, first(o).shape[-1])))
                model(ids_all[lo:lo + B])
                hk.remove()
            means[h] = torch.cat(got).double().mean(0).float()
        sums = {"clean": 0.0}
        for lo in range(0, rows, B):
            ids = ids_all[lo:lo + B]
            clean = run(model, ids, {})
            sums["clean"] += ce(clean, ids)
            for h, (cfg, t) in coders.items():
                for kind, fn in (("spliced", lambda x, y, cfg=cfg, t=t: reconstruct(cfg, t, x if cfg.get("transcode") else y)),
                                 ("zero", lambda x, y: torch.zeros_like(y)),
                                 ("mean", lambda x, y, m=means[h]: m.expand_as(y).clone())):
                    lg = run(model, ids, {h: fn})
                    sums[f"{h}.{kind}.ce"] = sums.get(f"{h}.{kind}.ce", 0.0) + ce(lg, ids)
                    sums[f"{h}.{kind}.kl"] = sums.get(f"{h}.{kind}.kl", 0.0) + kl(clean, lg)
            if len(coders) > 1:
                allf = {h: (lambda x, y, cfg=cfg, t=t: reconstruct(cfg, t, x if cfg.get("transcode") else y)) for h, (cfg, t) in coders.items()}
                for kind, fns in (("spliced", allf), ("zero", {h: (lambda x, y: torch.zeros_like(y)) for h in coders})):
                    lg = run(model, ids, fns)
                    sums[f"all.{kind}.ce"] = sums.get(f"all.{kind}.ce", 0.0) + ce(lg, ids)
                    sums[f"all.{kind}.kl"] = sums.get(f"all.{kind}.kl", 0.0) + kl(clean, lg)
    sec = time.perf_counter() - t0
    n_ce = rows * (ctx - 1)
    print(json.dumps({"seconds": sec, "ce_clean": sums["clean"] / n_ce,
                      "ce_spliced": {h: sums[f"{h}.spliced.ce"] / n_ce for h in coders}}))


if __name__ == "__main__":
    main()
