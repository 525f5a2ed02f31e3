"""sparsify's own SparseCoder on the CPU, timed for bench/sae.ts in the same run as ours. A
measurement tool only: nothing in the project needs Python at build, test or run time.

Needs a Python with torch and sparsify importable (sparsify's public source on PYTHONPATH with its
dependencies schedulefree and simple_parsing, or `pip install eai-sparsify`; sparsify's package
__init__ also imports transformers and accelerate).

Runs as a small server so the bench can interleave single runs of ours and of sparsify:

    python sparsify_cpu_sae.py '{"threads": 2}'
    first line out:  {"library": "sparsify 1.3.0, torch 2.13.0+cpu", "ready": true}   (or {"error": ...})
    stdin, one JSON request per line, one JSON reply per line:
      {"op": "shape", "d": 768, "m": 24576, "k": 32, "n": 4096}      -> {"ok": true}
      {"op": "time", "what": "encode", "reps": 1, "warmup": 0}       -> {"seconds": [1.42]}

`what` is one of
  encode      with torch.no_grad(): sae.encode(x)
  forward     with torch.no_grad(): sae(x)
  train       one step of sparsify's Trainer for one hookpoint, without the LM forward (default
              config: loss_fn fvu, optimizer signum = ScheduleFreeWrapper(SignSGD(lr=5e-3/sqrt(m/2^14)),
              momentum=0.95), auxk_alpha 0): set_decoder_norm_to_unit_norm, sae(x), fvu + multi_topk_fvu/8,
              backward, remove_gradient_parallel_to_decoder_directions, step, zero_grad, dead-latent counters
  train_auxk  the same with auxk_alpha 1/32 and latents i % 10 == 0 dead
as in sparsify/trainer.py (Trainer.fit).
"""
import json
import os
import sys
import time


def setup(threads):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    import torch

    torch.set_num_threads(threads)
    import sparsify
    from sparsify import SaeConfig, SparseCoder
    from sparsify.sign_sgd import SignSGD
    from schedulefree import ScheduleFreeWrapper

    library = f"sparsify {getattr(sparsify, '__version__', '?')}, torch {torch.__version__}"
    return library, torch, SaeConfig, SparseCoder, SignSGD, ScheduleFreeWrapper


class Bench:
    def __init__(self, threads):
        (self.library, self.torch, self.SaeConfig, self.SparseCoder, self.SignSGD,
         self.ScheduleFreeWrapper) = setup(threads)
        self.sae = None

    def shape(self, d, m, k, n):
        torch = self.torch
        self.sae = self.opt = self.x = None  # free the previous shape first
        gen = torch.Generator().manual_seed(0)
        self.sae = self.SparseCoder(d, self.SaeConfig(num_latents=m, k=k), device="cpu")
        self.x = torch.randn(n, d, generator=gen)
        with torch.no_grad():
            self.sae.b_dec.data = self.x.mean(0)
        pg = dict(params=self.sae.parameters(), lr=5e-3 / (m / 2**14) ** 0.5)
        self.opt = self.ScheduleFreeWrapper(self.SignSGD([pg]), momentum=0.95)
        self.opt.train()
        self.n = n
        self.since_fired = torch.zeros(m, dtype=torch.long)
        self.did_fire = torch.zeros(m, dtype=torch.bool)
        self.dead = torch.arange(m) % 10 == 0

    def step(self, auxk_alpha):
        torch, sae = self.torch, self.sae
        sae.set_decoder_norm_to_unit_norm()
        out = sae(self.x, dead_mask=self.dead if auxk_alpha > 0 else None)
        self.did_fire[out.latent_indices.flatten()] = True
        loss = out.fvu + auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        self.opt.step()
        self.opt.zero_grad()
        with torch.no_grad():
            self.since_fired += self.n
            self.since_fired[self.did_fire] = 0
            self.did_fire.zero_()

    def run(self, what):
        torch = self.torch
        if what == "encode":
            with torch.no_grad():
                self.sae.encode(self.x)
        elif what == "forward":
            with torch.no_grad():
                self.sae(self.x)
        elif what == "train":
            self.step(0.0)
        elif what == "train_auxk":
            self.step(1 / 32)
        else:
            raise ValueError(f"unknown measurement {what!r}")


def main() -> None:
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    try:
        bench = Bench(int(cfg.get("threads", 2)))
    except Exception as e:  # noqa: BLE001 - reported to the bench, which says "not measured"
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return
    print(json.dumps({"library": bench.library, "ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req["op"] == "shape":
            bench.shape(int(req["d"]), int(req["m"]), int(req["k"]), int(req["n"]))
            print(json.dumps({"ok": True}), flush=True)
            continue
        for _ in range(int(req.get("warmup", 0))):
            bench.run(req["what"])
        secs = []
        for _ in range(int(req.get("reps", 1))):
            t0 = time.perf_counter()
            bench.run(req["what"])
            secs.append(time.perf_counter() - t0)
        print(json.dumps({"seconds": secs}), flush=True)


if __name__ == "__main__":
    main()
