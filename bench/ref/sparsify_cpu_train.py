"""One training step of sparsify's Trainer on the CPU (LM forward with the hookpoint's forward hook +
SparseCoder step + optimizer), timed for bench/train.ts in the same run as ours. A measurement tool
only: nothing in the project needs Python at build, test or run time.

Needs what bench/ref/sparsify_cpu_sae.py needs (torch, sparsify's source, schedulefree) plus
transformers. The step is the body of sparsify's Trainer.fit for loss_fn "fvu" and one hookpoint:
the base model (AutoModel, frozen, float32, sdpa) runs on the batch with a forward hook on the
block that flattens its output, sets b_dec to the first batch's mean, renormalises the decoder, runs
the SparseCoder (fvu + auxk_alpha * auxk + multi_topk_fvu / 8, backward), then after the model call:
remove_gradient_parallel_to_decoder_directions, optimizer step (signum = ScheduleFreeWrapper(SignSGD),
momentum 0.95), zero_grad, dead-latent counters. With "auxk" the latents i % 10 == 0 are dead in
every step (the counters are set back before each step, as bench/train.ts does for ours).

    python sparsify_cpu_train.py '{"threads": 2}'
    first line out:  {"library": "...", "ready": true}   (or {"error": ...})
    stdin, one JSON request per line, one JSON reply per line:
      {"op": "setup", "dir": "/tmp/m", "hookpoint": 6, "m": 24576, "k": 32, "batch": 8, "seq": 256,
       "auxk": false}                                            -> {"ok": true, "d": 768}
      {"op": "time", "reps": 1, "warmup": 0}                     -> {"seconds": [2.1]}
"""
import json
import sys
import time

from sparsify_cpu_sae import setup


class Bench:
    def __init__(self, threads):
        (self.library, self.torch, self.SaeConfig, self.SparseCoder, self.SignSGD,
         self.ScheduleFreeWrapper) = setup(threads)
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        self.transformers = transformers
        self.library += f", transformers {transformers.__version__}"
        self.model = None

    def setup(self, d, hookpoint, m, k, batch, seq, auxk):
        torch = self.torch
        self.model = self.sae = self.opt = None
        model = self.transformers.AutoModel.from_pretrained(d, dtype=torch.float32, attn_implementation="sdpa")
        model.eval().requires_grad_(False)
        block = model.base_model.h[hookpoint] if hasattr(model.base_model, "h") else model.base_model.layers[hookpoint]
        width = model.config.hidden_size
        gen = torch.Generator().manual_seed(2)
        self.ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=gen)
        self.sae = self.SparseCoder(width, self.SaeConfig(num_latents=m, k=k), device="cpu")
        pg = dict(params=self.sae.parameters(), lr=5e-3 / (m / 2**14) ** 0.5)
        self.opt = self.ScheduleFreeWrapper(self.SignSGD([pg]), momentum=0.95)
        self.opt.train()
        self.auxk_alpha = 1 / 32 if auxk else 0.0
        self.threshold = 10_000_000
        self.dead_pattern = torch.arange(m) % 10 == 0
        self.since_fired = torch.zeros(m, dtype=torch.long)
        self.did_fire = torch.zeros(m, dtype=torch.bool)
        self.first = True
        block.register_forward_hook(self.hook)
        self.model = model
        return {"ok": True, "d": width}

    def hook(self, _module, _inputs, outputs):
        torch, sae = self.torch, self.sae
        if isinstance(outputs, tuple):
            outputs = outputs[0]
        x = outputs.flatten(0, 1)
        if self.first:
            sae.b_dec.data = x.mean(0).to(sae.dtype)
            self.first = False
        sae.set_decoder_norm_to_unit_norm()
        dead = self.since_fired > self.threshold if self.auxk_alpha > 0 else None
        out = sae(x=x, y=x, dead_mask=dead)
        self.did_fire[out.latent_indices.flatten()] = True
        float(out.fvu.detach())  # the trainer's logging reads the losses every step
        if self.auxk_alpha > 0:
            float(out.auxk_loss.detach())
        float(out.multi_topk_fvu.detach())
        loss = out.fvu + self.auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
        loss.backward()

    def step(self):
        torch = self.torch
        if self.auxk_alpha > 0:
            self.since_fired.zero_()
            self.since_fired[self.dead_pattern] = self.threshold + 1
        n = self.ids.numel()
        self.model(self.ids)
        self.sae.remove_gradient_parallel_to_decoder_directions()
        self.opt.step()
        self.opt.zero_grad()
        with torch.no_grad():
            self.since_fired += n
            self.since_fired[self.did_fire] = 0
            self.did_fire.zero_()


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
        try:
            if req["op"] == "setup":
                reply = bench.setup(req["dir"], int(req["hookpoint"]), int(req["m"]), int(req["k"]),
                                    int(req["batch"]), int(req["seq"]), bool(req.get("auxk", False)))
            else:
                for _ in range(int(req.get("warmup", 0))):
                    bench.step()
                secs = []
                for _ in range(int(req.get("reps", 1))):
                    t0 = time.perf_counter()
                    bench.step()
                    secs.append(time.perf_counter() - t0)
                reply = {"seconds": secs}
        except Exception as e:  # noqa: BLE001 - one failed request, the bench reports it
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
