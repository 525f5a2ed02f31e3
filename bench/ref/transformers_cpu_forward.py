"""transformers' base model forward on the CPU, timed for bench/model.ts in the same run as ours. A
measurement tool only: nothing in the project needs Python at build, test or run time.

The model is what sparsify loads for loss_fn "fvu" (AutoModel: GPT2Model, LlamaModel, ...), float32,
sdpa attention, under torch.inference_mode, with a forward hook on every decoder block keeping its
output (sparsify's default hookpoints are all the blocks; its hooks keep outputs[0]).

Runs as a line server so the bench can alternate single runs of ours and of transformers:

    python transformers_cpu_forward.py '{"threads": 2}'
    first line out:  {"library": "transformers 5.x, torch 2.x", "ready": true}   (or {"error": ...})
    stdin, one JSON request per line, one JSON reply per line:
      {"op": "load", "dir": "/tmp/m", "batch": 8, "seq": 256, "mul": 7919, "add": 13}
                                 -> {"ok": true, "cls": "GPT2Model", "blocks": 12}
         token i of the batch (row-major) is (i * mul + add) % vocab_size, as in bench/model.ts
      {"op": "time", "reps": 1, "warmup": 0}                     -> {"seconds": [0.91]}
"""
import json
import os
import sys
import time


def setup(threads):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    import torch
    import transformers

    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return torch, transformers


def block_list(torch, model):
    """The decoder blocks: the one ModuleList as long as num_hidden_layers (as sparsify's get_layer_list)."""
    n = model.config.num_hidden_layers
    found = [m for _, m in model.base_model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if len(found) != 1:
        raise ValueError(f"{type(model).__name__}: found {len(found)} block lists of length {n}")
    return found[0]


class Bench:
    def __init__(self, threads):
        self.torch, self.transformers = setup(threads)
        self.library = f"transformers {self.transformers.__version__}, torch {self.torch.__version__}"
        self.model = None

    def load(self, d, batch, seq, mul, add):
        torch = self.torch
        self.model = None
        model = self.transformers.AutoModel.from_pretrained(d, dtype=torch.float32, attn_implementation="sdpa")
        model.eval()
        self.captured = {}
        blocks = block_list(torch, model)
        for i, b in enumerate(blocks):
            def hook(_m, _inp, out, i=i):
                self.captured[i] = out[0] if isinstance(out, tuple) else out
            b.register_forward_hook(hook)
        vocab = model.config.vocab_size
        n = batch * seq
        self.ids = torch.tensor([(i * mul + add) % vocab for i in range(n)], dtype=torch.int64).view(batch, seq)
        self.model = model
        return {"ok": True, "cls": type(model).__name__, "blocks": len(blocks)}

    def run(self):
        with self.torch.inference_mode():
            self.model(self.ids)
        self.captured.clear()


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
            if req["op"] == "load":
                reply = bench.load(req["dir"], int(req["batch"]), int(req["seq"]), int(req["mul"]), int(req["add"]))
            else:
                for _ in range(int(req.get("warmup", 0))):
                    bench.run()
                secs = []
                for _ in range(int(req.get("reps", 1))):
                    t0 = time.perf_counter()
                    bench.run()
                    secs.append(time.perf_counter() - t0)
                reply = {"seconds": secs}
        except Exception as e:  # noqa: BLE001 - one failed request, the bench reports it
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
