"""transformers' GPT-2 forward on the GPU, for comparison with bench/cuda.ts section 4 (run by
scripts/gpu-check.sh on a GPU machine with PyTorch; a measurement tool only, nothing in the
project needs Python at build, test or run time).

    python bench/ref/torch_gpt2_forward.py <checkpoint dir> [--batch 8] [--seq 256] [--reps 20]

The checkpoint is the random GPT-2-small folder bench/cuda.ts writes (bench/lib/gpt2-checkpoint.ts,
in the OS temp folder). Same token ids as bench/cuda.ts. Measures GPT2Model (the base model, what
sparsify loads) with a forward hook capturing h.6 and stopping there (sparsify truncates the
model after the deepest hookpoint), and the full 12 blocks with output_hidden_states, in float32
(TF32 off and on) and bfloat16 weights; median wall time per call including a cuda synchronize
and the activations staying on the GPU. Prints one JSON object.
"""
import argparse
import json
import time

import torch
from transformers import GPT2Model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    dev = torch.device("cuda")
    torch.set_grad_enabled(False)
    n = a.batch * a.seq
    ids = torch.tensor([(i * 7919 + 13) % 50257 for i in range(n)], dtype=torch.int64, device=dev).view(a.batch, a.seq)
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "batch": a.batch, "seq": a.seq}

    def timed(fn):
        fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
        ts.sort()
        ms = ts[len(ts) // 2] * 1e3
        return {"ms": ms, "tokensPerSecond": n * 1e3 / ms}

    for label, dtype, tf32 in [("float32", torch.float32, False), ("float32+tf32", torch.float32, True),
                               ("bfloat16", torch.bfloat16, False)]:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        model = GPT2Model.from_pretrained(a.dir, torch_dtype=dtype, attn_implementation="sdpa").to(dev).eval()
        # One hookpoint, truncated after block 6 (as sparsify does for its deepest hookpoint).
        captured = {}

        class Stop(Exception):
            pass

        def hook(_m, _i, o):
            captured["h.6"] = o[0] if isinstance(o, tuple) else o
            raise Stop()

        h = model.h[6].register_forward_hook(hook)

        def one():
            try:
                model(ids)
            except Stop:
                pass

        r1 = timed(one)
        h.remove()
        r_all = timed(lambda: model(ids, output_hidden_states=True))
        out[label] = {"oneHookpoint": r1, "allBlocks": r_all}
        del model
        torch.cuda.empty_cache()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
