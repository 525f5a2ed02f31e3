"""Python sparsify's full SAE training step on a GPU, timed next to ours (bench/cuda.ts).

A measurement tool for the device machine only: nothing in the project needs Python to build, test
or run. scripts/gpu-check.sh runs it after bench/cuda.ts; bench/lib/compare-gpu.ts turns both JSON
outputs into the comparison. See bench/README.md ("GPU comparison") for how it is run.

    python3 bench/ref/sparsify_gpu_step.py [--sparsify bench/vendor/sparsify] [--json out.json]
        [--quick] [--reps 10] [--warmup 3] [--x-dtype bf16|float32] [--no-roofline] [--no-encode]
    python3 bench/ref/sparsify_gpu_step.py --cpu-smoke     # one tiny step on the CPU, checked

What is timed (median wall time per step, torch.cuda.synchronize() before and after each step):
the body of sparsify's Trainer.fit for one SAE with loss_fn='fvu', optimizer='adam',
auxk_alpha=1/32, grad_acc_steps=micro_acc_steps=1, no DDP, in its order:
  hook():  set_decoder_norm_to_unit_norm(); dead_mask = num_tokens_since_fired > threshold;
           out = sae(x=x, y=x, dead_mask=dead_mask)   # SparseCoder.forward, bf16 autocast on CUDA:
                                                      # FusedEncoder (F.linear + relu + topk),
                                                      # Triton embedding-bag decode, FVU, AuxK
           did_fire[out.latent_indices.flatten()] = True
           float(out.fvu); float(out.auxk_loss)       # the trainer's logging (host syncs)
           (out.fvu + auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8).div(1).backward()
  step:    remove_gradient_parallel_to_decoder_directions(); Adam.step(); zero_grad();
           scheduler.step(); num_tokens_since_fired += N; [did_fire] = 0; did_fire.zero_()
The SparseCoder, FusedEncoder and Triton kernels are sparsify's own code, imported from the
vendored source; the Trainer itself is not run (it needs a Hugging Face model and dataset and
would time the LM forward too), so this file repeats the lines of its hook and step listed above.
Between timed steps the dead-latent counters are restored (untimed), so every step sees the same
10% dead latents (latent i dead iff i % 10 == 0), as bench/cuda.ts's resident step does.

Imports: sparsify/__init__.py is bypassed (it imports the Trainer: datasets, schedulefree, natsort,
tqdm, transformers). Modules the SAE step never calls are stubbed only when they are not installed,
and the output names them: simple_parsing (config base class, list_field), natsort (load_many),
huggingface_hub (load_from_hub), accelerate / transformers (utils.py helpers for the LM). The step
needs torch, einops and safetensors (imported by sparse_coder.py) and, on CUDA, triton (else
sparsify itself falls back to its eager decoder; the output says which decoder ran).
"""

import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import os
import statistics
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SPARSIFY = HERE.parent / "vendor" / "sparsify"

# Shapes: the same as bench/cuda.ts (full and --quick), so the comparison is like for like.
STEP_SHAPE = {"n": 8192, "d": 4096, "m": 131072, "k": 32}
STEP_SHAPE_QUICK = {"n": 2048, "d": 1024, "m": 16384, "k": 32}
ENC_SHAPE = {"n": 16384, "d": 4096, "m": 131072, "k": 32}
ENC_SHAPE_QUICK = {"n": 4096, "d": 2048, "m": 32768, "k": 32}
SMOKE_SHAPE = {"n": 64, "d": 32, "m": 256, "k": 8}
AUXK_ALPHA = 1 / 32  # bench/cuda.ts's cudaSaeForwardBackward default
DEAD_EVERY = 10  # latent i is dead iff i % DEAD_EVERY == 0 (bench/cuda.ts's dead mask)
DEAD_THRESHOLD = 10_000_000  # TrainConfig.dead_feature_threshold default
LR_WARMUP_STEPS = 1000  # TrainConfig.lr_warmup_steps default


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- importing sparsify


def _stub_simple_parsing():
    m = types.ModuleType("simple_parsing")

    class Serializable:  # sparsify's configs only subclass it; to_dict/save_json are never called
        pass

    def list_field(*default):
        return dataclasses.field(default_factory=lambda: list(default))

    m.Serializable, m.list_field = Serializable, list_field
    return {"simple_parsing": m}


def _unused(name):
    def f(*_a, **_k):
        raise RuntimeError(f"{name} is a stub in bench/ref/sparsify_gpu_step.py (not used by the step)")

    return f


def _stub_natsort():
    m = types.ModuleType("natsort")
    m.natsorted = _unused("natsort.natsorted")
    return {"natsort": m}


def _stub_huggingface_hub():
    m = types.ModuleType("huggingface_hub")
    m.snapshot_download = _unused("huggingface_hub.snapshot_download")
    return {"huggingface_hub": m}


def _stub_accelerate():
    m, u = types.ModuleType("accelerate"), types.ModuleType("accelerate.utils")
    u.send_to_device = _unused("accelerate.utils.send_to_device")
    m.utils = u
    return {"accelerate": m, "accelerate.utils": u}


def _stub_transformers():
    m = types.ModuleType("transformers")

    class PreTrainedModel:  # only an annotation in sparsify/utils.py
        pass

    m.PreTrainedModel = PreTrainedModel
    return {"transformers": m}


STUBS = [
    ("simple_parsing", _stub_simple_parsing),
    ("natsort", _stub_natsort),
    ("huggingface_hub", _stub_huggingface_hub),
    ("accelerate.utils", _stub_accelerate),
    ("transformers", _stub_transformers),
]


def load_sparsify(root: Path):
    """Imports sparsify.sparse_coder/config/utils from the vendored tree without its __init__."""
    pkg_dir = root / "sparsify"
    if not (pkg_dir / "sparse_coder.py").is_file():
        raise SystemExit(f"sparsify source not found at {pkg_dir} (see bench/README.md: GPU comparison)")
    stubbed = []
    for name, make in STUBS:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules.update(make())
            stubbed.append(name.split(".")[0])
    pkg = types.ModuleType("sparsify")
    pkg.__path__ = [str(pkg_dir)]
    pkg.__file__ = str(pkg_dir / "__init__.py")
    sys.modules["sparsify"] = pkg
    # sparsify/utils.py prints which decoder it picked; keep stdout for the JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        sc = importlib.import_module("sparsify.sparse_coder")
        cfg = importlib.import_module("sparsify.config")
        utils = importlib.import_module("sparsify.utils")
    commit_file = root / "COMMIT"
    commit = commit_file.read_text().strip() if commit_file.is_file() else None
    return sc, cfg, utils, stubbed, commit


# ----------------------------------------------------------------------------- the training step


def linear_warmup_scheduler(opt, warmup, total):
    """transformers.get_linear_schedule_with_warmup, used when transformers is a stub (same formula)."""
    import torch

    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


class SparsifyStep:
    """One SAE, its Adam optimizer and scheduler, and the trainer's dead-latent bookkeeping."""

    def __init__(self, mods, shape, device, x_dtype, seed=0):
        import torch

        sc, cfgmod, _utils, stubbed, _ = mods
        self.torch = torch
        n, d, m, k = shape["n"], shape["d"], shape["m"], shape["k"]
        torch.manual_seed(seed)  # Trainer.__init__
        self.sae = sc.SparseCoder(d, cfgmod.SparseCoderConfig(num_latents=m, k=k), device, dtype=torch.float32)
        gen = torch.Generator(device=device).manual_seed(seed + 1)
        self.x = torch.randn(n, d, device=device, generator=gen).to(x_dtype)
        # Trainer.fit at global_step 0: b_dec = mean of the batch.
        self.sae.b_dec.data = self.x.mean(0).to(self.sae.dtype)
        # Trainer.__init__, optimizer 'adam' (torch.optim.Adam when bitsandbytes is absent).
        # The warm-up starts at lr 0, so the first update is zero, as in sparsify; speed is the same.
        lr = 2e-4 / (self.sae.num_latents / (2**14)) ** 0.5
        self.opt = torch.optim.Adam([dict(params=self.sae.parameters(), lr=lr)])
        if "transformers" in stubbed:
            self.sched, self.sched_impl = linear_warmup_scheduler(self.opt, LR_WARMUP_STEPS, 10**6), "local"
        else:
            from transformers import get_linear_schedule_with_warmup

            self.sched = get_linear_schedule_with_warmup(self.opt, LR_WARMUP_STEPS, 10**6)
            self.sched_impl = "transformers"
        self.counts0 = torch.zeros(m, device=device, dtype=torch.long)
        self.counts0[::DEAD_EVERY] = DEAD_THRESHOLD + 1
        self.num_tokens_since_fired = self.counts0.clone()
        self.did_fire = torch.zeros(m, device=device, dtype=torch.bool)
        self.num_dead = int((self.counts0 > DEAD_THRESHOLD).sum())
        self.logged = {"fvu": 0.0, "auxk": 0.0}

    def forward_backward(self):
        """The trainer's hook for one SAE (loss_fn='fvu', acc_steps=1)."""
        sae = self.sae
        sae.set_decoder_norm_to_unit_norm()
        dead_mask = self.num_tokens_since_fired > DEAD_THRESHOLD
        out = sae(x=self.x, y=self.x, dead_mask=dead_mask)
        self.did_fire[out.latent_indices.flatten()] = True
        self.logged["fvu"] = float(out.fvu.detach())
        self.logged["auxk"] = float(out.auxk_loss.detach())
        loss = out.fvu + AUXK_ALPHA * out.auxk_loss + out.multi_topk_fvu / 8
        loss.div(1).backward()
        return out

    def apply(self):
        """The trainer's optimizer step (grad_acc_steps=1)."""
        torch = self.torch
        self.sae.remove_gradient_parallel_to_decoder_directions()
        self.opt.step()
        self.opt.zero_grad()
        self.sched.step()
        with torch.no_grad():
            self.num_tokens_since_fired += self.x.shape[0]
            self.num_tokens_since_fired[self.did_fire] = 0
            self.did_fire.zero_()

    def step(self):
        self.forward_backward()
        self.apply()

    def reset_dead(self):
        self.num_tokens_since_fired.copy_(self.counts0)


# ----------------------------------------------------------------------------- timing helpers


def sync(device):
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, warmup, reps, device="cuda"):
    """Median time of fn: CUDA events on a GPU (fn must not sync), perf_counter elsewhere."""
    import torch

    cuda = torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    sync(device)
    ts = []
    for _ in range(reps):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def roofline(square, enc, copy_bytes, device="cuda"):
    """Library (cuBLAS) bf16 matmul rate, square and at the encoder's shape, and copy bandwidth.

    Random inputs, never zeros (METHOD.md: zeros run faster than real data)."""
    import torch

    dev = torch.device(device)
    g = torch.Generator(device=dev).manual_seed(0)
    res = {}
    s = square
    a = torch.randn(s, s, device=dev, dtype=torch.bfloat16, generator=g)
    b = torch.randn(s, s, device=dev, dtype=torch.bfloat16, generator=g)
    c = torch.empty(s, s, device=dev, dtype=torch.bfloat16)
    ms = median_ms(lambda: torch.mm(a, b, out=c), 3, 10, device)
    res["matmul_square"] = {"size": s, "ms": ms, "tflops": 2 * s**3 / (ms * 1e-3) / 1e12}
    del a, b, c
    # The encoder GEMM as sparsify's F.linear runs it: x [n, d] · W[m, d]^T (bias left out).
    n, d, m = enc["n"], enc["d"], enc["m"]
    x = torch.randn(n, d, device=dev, dtype=torch.bfloat16, generator=g)
    w = torch.randn(m, d, device=dev, dtype=torch.bfloat16, generator=g)
    out = torch.empty(n, m, device=dev, dtype=torch.bfloat16)
    ms = median_ms(lambda: torch.mm(x, w.t(), out=out), 2, 5, device)
    res["matmul_encoder"] = {"n": n, "d": d, "m": m, "ms": ms, "tflops": 2 * n * d * m / (ms * 1e-3) / 1e12}
    del x, w, out
    src = torch.randint(0, 255, (copy_bytes,), device=dev, dtype=torch.uint8, generator=g)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), 3, 20, device)
    res["copy"] = {"bytes": copy_bytes, "ms": ms, "gbs": 2 * copy_bytes / (ms * 1e-3) / 1e9}  # read + write
    del src, dst
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return res


def time_encode(mods, enc, reps, device="cuda"):
    """sparsify's encoder alone (FusedEncoder forward: F.linear + relu + topk) under bf16 autocast."""
    import torch

    sc, cfgmod = mods[0], mods[1]
    torch.manual_seed(0)
    sae = sc.SparseCoder(enc["d"], cfgmod.SparseCoderConfig(num_latents=enc["m"], k=enc["k"]), device,
                         dtype=torch.float32, decoder=False)
    x = torch.randn(enc["n"], enc["d"], device=device, dtype=torch.bfloat16)
    cuda = torch.device(device).type == "cuda"

    def f():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda), torch.no_grad():
            sae.encode(x)

    ms = median_ms(f, 2, reps, device)
    del sae, x
    if cuda:
        torch.cuda.empty_cache()
    n, d, m = enc["n"], enc["d"], enc["m"]
    return {**enc, "ms": ms, "tokens_per_s": n / (ms * 1e-3), "tflops": 2 * n * d * m / (ms * 1e-3) / 1e12}


def time_step(mods, shape, x_dtype, warmup, reps, device="cuda"):
    """Median wall time of SparsifyStep.step (it syncs itself: float(fvu), int(dead_mask.sum()))."""
    import torch

    cuda = torch.device(device).type == "cuda"
    st = SparsifyStep(mods, shape, device, x_dtype)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    fallback = None
    for i in range(warmup):  # the first one compiles sparsify's Triton kernels
        st.reset_dead()
        try:
            st.step()
        except Exception as err:  # noqa: BLE001 - report, then sparsify's own eager decoder
            if i > 0 or mods[0].decoder_impl is mods[2].eager_decode:
                raise
            fallback = f"{mods[0].decoder_impl.__name__}: {type(err).__name__}: {err}"[:500]
            log(f"sparsify_gpu_step: the step failed ({fallback}); "
                "retrying with sparsify's eager decoder (utils.eager_decode)")
            mods[0].decoder_impl = mods[2].eager_decode
            st = SparsifyStep(mods, shape, device, x_dtype)
            st.reset_dead()
            st.step()
    times = []
    for _ in range(reps):
        st.reset_dead()  # untimed: the same dead latents every step
        sync(device)
        t0 = time.perf_counter()
        st.step()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    res = {
        "ms_per_step": ms,
        "tokens_per_s": shape["n"] / (ms * 1e-3),
        "steps_ms": [round(t, 3) for t in times],
        "decoder": mods[0].decoder_impl.__name__,
        "decoder_fallback": fallback,
        "num_dead": st.num_dead,
        "k_aux": min(shape["d"] // 2, st.num_dead),
        "last_fvu": st.logged["fvu"],
        "last_auxk": st.logged["auxk"],
        "scheduler": st.sched_impl,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }
    del st
    if cuda:
        torch.cuda.empty_cache()
    return res


# ----------------------------------------------------------------------------- CPU smoke


def cpu_smoke(mods):
    """Two tiny steps on the CPU through the same SparsifyStep, with checks; no timings."""
    import torch

    shape = SMOKE_SHAPE
    st = SparsifyStep(mods, shape, "cpu", torch.float32)
    sae = st.sae
    checks = {}
    w_enc0 = sae.encoder.weight.detach().clone()
    for it in range(2):
        st.reset_dead()
        # Independent float64 recomputation of what the forward must give (TopK, decode, FVU, AuxK).
        with torch.no_grad():
            wd = sae.W_dec.detach().double()
            wd = wd / (wd.norm(dim=1, keepdim=True) + torch.finfo(torch.float32).eps)
            x = st.x.double()
            pre = torch.relu((x - sae.b_dec.double()) @ sae.encoder.weight.double().T + sae.encoder.bias.double())
            v, i = pre.topk(shape["k"], dim=-1)
            y = (v[..., None] * wd[i]).sum(1) + sae.b_dec.double()
            e = x - y
            tv = (x - x.mean(0)).pow(2).sum()
            fvu_ref = float(e.pow(2).sum() / tv)
            dead = st.num_tokens_since_fired > DEAD_THRESHOLD
            k_aux = min(shape["d"] // 2, int(dead.sum()))
            scale = min(int(dead.sum()) / (shape["d"] // 2), 1.0)
            av, ai = torch.where(dead[None], pre, -math.inf).topk(k_aux, dim=-1)
            ehat = (av[..., None] * wd[ai]).sum(1) + sae.b_dec.double()
            auxk_ref = float(scale * (ehat - e).pow(2).sum() / tv)
        out = st.forward_backward()
        checks[f"step{it}_fvu"] = [st.logged["fvu"], fvu_ref]
        checks[f"step{it}_auxk"] = [st.logged["auxk"], auxk_ref]
        assert math.isfinite(st.logged["fvu"]) and abs(st.logged["fvu"] - fvu_ref) <= 1e-4 * max(1.0, fvu_ref), checks
        assert st.logged["auxk"] > 0 and abs(st.logged["auxk"] - auxk_ref) <= 1e-4 * max(1.0, auxk_ref), checks
        assert out.latent_indices.shape == (shape["n"], shape["k"])
        assert sae.W_dec.grad is not None and sae.encoder.weight.grad is not None
        # remove_gradient_parallel_to_decoder_directions leaves a grad orthogonal to each unit row.
        sae.remove_gradient_parallel_to_decoder_directions()
        par = (sae.W_dec.grad * sae.W_dec.data).sum(1).abs().max().item()
        checks[f"step{it}_max_parallel_grad"] = par
        assert par < 1e-5, checks
        st.apply()
        assert all(p.grad is None or not p.grad.any() for p in sae.parameters()), "zero_grad"
    assert not torch.equal(w_enc0, sae.encoder.weight), "Adam did not move W_enc"
    # The timed code paths, on tiny sizes (their times mean nothing on this CPU and are dropped).
    exercised = []
    r = roofline(32, {"n": 16, "d": 32, "m": 64}, 1 << 16, "cpu")
    assert all(math.isfinite(v["ms"]) for v in r.values())
    exercised.append("roofline")
    r = time_encode(mods, {**shape, "n": 16}, 1, "cpu")
    assert r["tokens_per_s"] > 0
    exercised.append("time_encode")
    r = time_step(mods, shape, torch.bfloat16, 1, 2, "cpu")
    assert r["k_aux"] == min(shape["d"] // 2, r["num_dead"]) and len(r["steps_ms"]) == 2
    assert math.isfinite(r["last_fvu"]) and r["last_auxk"] > 0
    exercised.append("time_step(bf16 x)")
    # A decoder that fails in the first warm-up step is replaced by sparsify's eager one.
    sc, utils = mods[0], mods[2]
    saved = sc.decoder_impl

    def broken(*_a):
        raise RuntimeError("planted decoder failure")

    sc.decoder_impl = broken
    try:
        r = time_step(mods, shape, torch.float32, 1, 1, "cpu")
    finally:
        sc.decoder_impl = saved
    assert r["decoder"] == "eager_decode" and "planted" in r["decoder_fallback"], r
    exercised.append("decoder fallback")
    return {"shape": shape, "checks": checks, "exercised": exercised}


# ----------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsify", type=Path, default=DEFAULT_SPARSIFY, help="sparsify source tree (has sparsify/)")
    ap.add_argument("--json", type=Path, help="also write the result object here")
    ap.add_argument("--quick", action="store_true", help="bench/cuda.ts --quick sizes")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--x-dtype", choices=["bf16", "float32"], default="bf16",
                    help="activation dtype fed to the SAE (sparsify's CLI loads the LM in bf16)")
    ap.add_argument("--no-roofline", action="store_true")
    ap.add_argument("--no-encode", action="store_true")
    ap.add_argument("--cpu-smoke", action="store_true", help="one tiny checked step on the CPU; no timings")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.warmup < 1:
        ap.error("--reps and --warmup must be >= 1")

    import torch

    mods = load_sparsify(args.sparsify)
    _sc, _cfg, utils, stubbed, commit = mods
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    result = {
        "library": "sparsify",
        "sparsify_commit": commit,
        "torch": torch.__version__,
        "triton": triton_version,
        "decoder_impl": utils.decoder_impl.__name__,
        "stubbed_modules": stubbed,
    }

    if args.cpu_smoke:
        result.update({"mode": "cpu-smoke", "device": "cpu", **cpu_smoke(mods), "ok": True})
    elif not torch.cuda.is_available():
        result.update({"skipped": "torch sees no CUDA device (torch.cuda.is_available() is False)"})
    else:
        torch.set_float32_matmul_precision("high")  # Trainer.fit
        props = torch.cuda.get_device_properties(0)
        step_shape = STEP_SHAPE_QUICK if args.quick else STEP_SHAPE
        enc_shape = ENC_SHAPE_QUICK if args.quick else ENC_SHAPE
        x_dtype = torch.bfloat16 if args.x_dtype == "bf16" else torch.float32
        result.update({
            "mode": "quick" if args.quick else "full",
            "device": props.name,
            "multiprocessors": props.multi_processor_count,
            "bf16_autocast": bool(torch.cuda.is_bf16_supported()),
            "x_dtype": args.x_dtype,
            "optimizer": "torch.optim.Adam",
            "auxk_alpha": AUXK_ALPHA,
            "shape": {**step_shape, "dead_every": DEAD_EVERY},
        })
        if not args.no_roofline:
            log("sparsify_gpu_step: roofline (torch bf16 matmul, copy)")
            result["roofline"] = roofline(4096 if args.quick else 8192, enc_shape, 2**30)
        if not args.no_encode:
            log("sparsify_gpu_step: sparsify encode")
            result["encode"] = time_encode(mods, enc_shape, max(3, args.reps // 2))
        log(f"sparsify_gpu_step: training step {step_shape} (warm-up {args.warmup}, reps {args.reps})")
        step = time_step(mods, step_shape, x_dtype, args.warmup, args.reps)
        result["decoder_impl"] = step["decoder"]
        result.update({"tokens_per_s": step.pop("tokens_per_s"), "ms_per_step": step.pop("ms_per_step"), "step": step})

    line = json.dumps(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
