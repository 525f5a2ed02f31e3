"""Writes test/fixtures/saelens/<variant>/: SAELens coder folders (cfg.json + sae_weights.safetensors)
laid out as SAELens 6.18 (and, for the *_v5 variants, 5.x) writes them, plus golden.safetensors with
the encode / decode that SAELens's formulas give in PyTorch (float32):

  standard  f = ReLU(h)                         h = x' W_enc + b_enc, x' = x - b_dec [apply_b_dec_to_input]
  jumprelu  f = ReLU(h) * 1[h > threshold]
  gated     f = 1[x' W_enc + b_gate > 0] * ReLU(x' (W_enc * exp(r_mag)) + b_mag)
  topk      h <- h * ||W_dec[i]|| when rescale_acts_by_decoder_norm; top-k of h, ReLU of the selected
            values; decode divides by the norms first
  batchtopk checkpoint: inference is the JumpReLU SAELens's save_inference_model writes (norms folded,
            threshold = topk_threshold for every latent)
  decode    y = f W_dec + b_dec

Formulas from SAELens 6.18.0 sae_lens/saes/{standard,jumprelu,gated,topk,batchtopk}_sae.py
(github.com/jbloomAus/SAELens); the pre-6 key set from tag v5.11.0 sae_lens/sae.py.
SAELens is not installed: the files are written from that documented layout.

Run: python3 scripts/make-saelens-fixtures.py   (needs torch, safetensors)
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'saelens')
D, M, N = 16, 64, 12
META = {
    'sae_lens_version': '6.18.0', 'sae_lens_training_version': '6.18.0', 'model_name': 'tiny-gpt2',
    'model_class_name': 'HookedTransformer', 'hook_name': 'blocks.0.hook_resid_pre', 'hook_head_index': None,
    'context_size': 16, 'prepend_bos': True, 'dataset_path': 'local', 'seqpos_slice': [None],
    'model_from_pretrained_kwargs': {'center_writing_weights': False},
}


def base_weights(g, arch):
    W_dec = torch.randn(M, D, generator=g) * (0.5 + torch.rand(M, 1, generator=g))  # non-unit rows
    w = {'W_enc': torch.randn(D, M, generator=g) / D ** 0.5, 'W_dec': W_dec, 'b_dec': torch.randn(D, generator=g) * 0.1}
    if arch == 'gated':
        w['b_gate'] = torch.randn(M, generator=g) * 0.3
        w['r_mag'] = torch.randn(M, generator=g) * 0.3
        w['b_mag'] = torch.randn(M, generator=g) * 0.3
    else:
        w['b_enc'] = torch.randn(M, generator=g) * 0.3
    if arch == 'jumprelu':
        w['threshold'] = torch.rand(M, generator=g) * 0.6
    return w


def sae_in(x, w, apply_b_dec):
    return x - w['b_dec'] if apply_b_dec else x


def margin_ok(v, eps=1e-3):
    return bool((v.abs() > eps).all())


def encode(x, w, arch, cfg):
    """SAELens inference encode; returns (dense feature acts, ok) where ok says no gate / rank is within eps of flipping."""
    xi = sae_in(x, w, cfg['apply_b_dec_to_input'])
    if arch == 'standard':
        h = xi @ w['W_enc'] + w['b_enc']
        return torch.relu(h), margin_ok(h)
    if arch == 'jumprelu':
        h = xi @ w['W_enc'] + w['b_enc']
        return torch.relu(h) * (h > w['threshold']), margin_ok(h - w['threshold']) and margin_ok(h)
    if arch == 'gated':
        pg = xi @ w['W_enc'] + w['b_gate']
        pm = xi @ (w['W_enc'] * torch.exp(w['r_mag'])) + w['b_mag']
        return (pg > 0).float() * torch.relu(pm), margin_ok(pg) and margin_ok(pm)
    if arch == 'topk':
        h = xi @ w['W_enc'] + w['b_enc']
        if cfg['rescale_acts_by_decoder_norm']:
            h = h * w['W_dec'].norm(dim=-1)
        k = cfg['k']
        vals, idx = torch.topk(h, k + 1, dim=-1)
        ok = margin_ok(vals[:, k - 1] - vals[:, k]) and margin_ok(h)
        f = torch.zeros_like(h).scatter(-1, idx[:, :k], torch.relu(vals[:, :k]))
        return f, ok
    raise ValueError(arch)


def decode(f, w, arch, cfg):
    if arch == 'topk' and cfg['rescale_acts_by_decoder_norm']:
        f = f / w['W_dec'].norm(dim=-1)
    return f @ w['W_dec'] + w['b_dec']


def fold_batchtopk(w, threshold):
    """save_inference_model of BatchTopK: decoder-norm fold, then a JumpReLU threshold per latent."""
    n = w['W_dec'].norm(dim=-1)
    f = {'W_enc': w['W_enc'] * n, 'b_enc': w['b_enc'] * n, 'W_dec': w['W_dec'] / n[:, None], 'b_dec': w['b_dec']}
    f['threshold'] = torch.ones(M) * threshold
    return f


def write(name, cfg, weights, golden):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, 'cfg.json'), 'w') as fh:
        json.dump(cfg, fh)
    save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(d, 'sae_weights.safetensors'))
    save_file({k: v.contiguous() for k, v in golden.items()}, os.path.join(d, 'golden.safetensors'))


def v6_cfg(arch, apply_b_dec=True, **extra):
    c = {'d_in': D, 'd_sae': M, 'dtype': 'float32', 'device': 'cpu', 'apply_b_dec_to_input': apply_b_dec,
         'normalize_activations': 'none', 'reshape_activations': 'none', 'metadata': dict(META)}
    c.update(extra)
    c['architecture'] = arch
    return c


def v5_cfg(arch, apply_b_dec, activation_fn='relu', kwargs=None):
    """The flat SAELens 5.x cfg.json (v5.11.0 SAEConfig.to_dict), with no sae_lens_version."""
    return {'architecture': arch, 'd_in': D, 'd_sae': M, 'dtype': 'float32', 'device': 'cpu', 'model_name': 'tiny-gpt2',
            'hook_name': 'blocks.0.hook_resid_pre', 'hook_layer': 0, 'hook_head_index': None,
            'activation_fn_str': activation_fn, 'activation_fn_kwargs': kwargs or {}, 'apply_b_dec_to_input': apply_b_dec,
            'finetuning_scaling_factor': False, 'sae_lens_training_version': '5.11.0', 'prepend_bos': True,
            'dataset_path': 'local', 'dataset_trust_remote_code': True, 'context_size': 16, 'normalize_activations': False,
            'neuronpedia_id': None, 'model_from_pretrained_kwargs': {}, 'seqpos_slice': [None]}


def make(name, arch, cfg, seed, eval_arch=None, eval_cfg=None, transform=None, x_scale=None):
    """Draws weights and inputs until no gate or rank is within 1e-3 of flipping, then writes the fixture."""
    for attempt in range(200):
        g = torch.Generator().manual_seed(seed * 1000 + attempt)
        w = base_weights(g, 'standard' if arch in ('topk', 'batchtopk') else arch)
        x = torch.randn(N, D, generator=g)
        ew, ea, ec = (transform(w) if transform else w), eval_arch or arch, eval_cfg or cfg
        xin = x * x_scale if x_scale else x
        f, ok = encode(xin, ew, ea, ec)
        if not ok or int((f > 0).sum()) == 0:
            continue
        out = decode(f, ew, ea, ec)
        if x_scale:
            out = out / x_scale
        write(name, cfg, w if not transform or arch != 'batchtopk' else {**w, 'topk_threshold': torch.tensor(THRESH, dtype=torch.float64)},
              {'x': x, 'feature_acts': f, 'sae_out': out})
        return
    raise RuntimeError(f'{name}: no draw without near-ties')


THRESH = 0.35

if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    make('standard', 'standard', v6_cfg('standard'), 1)
    make('standard_v5', 'standard', v5_cfg('standard', False), 2, eval_cfg={'apply_b_dec_to_input': False})
    make('jumprelu', 'jumprelu', v6_cfg('jumprelu', apply_b_dec=False), 3)
    make('gated', 'gated', v6_cfg('gated'), 4)
    make('topk', 'topk', v6_cfg('topk', k=8, rescale_acts_by_decoder_norm=False), 5)
    make('topk_rescale', 'topk', v6_cfg('topk', apply_b_dec=False, k=8, rescale_acts_by_decoder_norm=True), 6)
    make('topk_v5', 'topk', v5_cfg('standard', True, 'topk', {'k': 6}), 7,
         eval_cfg={'apply_b_dec_to_input': True, 'k': 6, 'rescale_acts_by_decoder_norm': False})
    # BatchTopK training checkpoint (save_model): unfolded weights + a float64 topk_threshold.
    bt = v6_cfg('batchtopk', k=6.5, rescale_acts_by_decoder_norm=True, use_sparse_activations=False,
                aux_loss_coefficient=1.0, decoder_init_norm=0.1, topk_threshold_lr=0.01)
    make('batchtopk', 'batchtopk', bt, 8, eval_arch='jumprelu', eval_cfg={'apply_b_dec_to_input': True},
         transform=lambda w: fold_batchtopk(w, THRESH))
    # expected_average_only_in: trained on s*x; golden = decode(encode(s*x)) / s on raw x.
    make('expected_average', 'standard', v6_cfg('standard', normalize_activations='expected_average_only_in'), 9, x_scale=2.5)
    print('wrote', sorted(os.listdir(OUT)))
