"""Writes test/fixtures/kinds/<case>.safetensors: the training forward / backward of the coder kinds
jumprelu, batchtopk, relu (SAELens "standard" with L1) and matryoshka (over BatchTopK), computed in
float64 PyTorch with SAELens 6.18.0's formulas (github.com/jbloomAus/SAELens, sae_lens/saes/
{standard,jumprelu,topk,batchtopk,matryoshka_batchtopk}_sae.py, sae_lens/saes/sae.py; SAELens itself
is not installed, so the formulas are written out here):

  x' = x - b_dec, h = x' W_enc^T + b_enc   (W_enc in our [M, D] layout), n_i = ||W_dec[i]||
  mse = mean_n sum_d (out - x)^2,  out = f W_dec + b_dec
  relu      f = ReLU(h); loss = mse + l1_coefficient * mean_n sum_i f_i n_i
            lp_norm p != 1: loss = mse + l1_coefficient * mean_n ||f * n||_p  (torch .norm(p=p, dim=-1))
  jumprelu  theta = exp(log_threshold); f = h * 1[h > theta] with the straight-through backward
            df/dh = 1[h > theta], dtheta = -(theta/eps) rect((h - theta)/eps) g   (summed over rows);
            step: l0 = c * mean_n sum_i H(h - theta), dH/dtheta = -(1/eps) rect(.), no grad to h;
            tanh: l0 = c * mean_n sum_i tanh(s * f_i * n_i)
  batchtopk h' = h * n, a = ReLU(h'), keep the top floor(k * N) values of the whole batch;
            out = (f / n) W_dec + b_dec; threshold <- (1 - lr) threshold + lr * min(f[f > 0])
  matryoshka  batchtopk + sum over widths w < M of mean_n sum_d ((f[:, :w] / n[:w]) W_dec[:w] + b_dec - x)^2
  topk      the top k of ReLU(h') per row (TopK with rescale_acts_by_decoder_norm), Matryoshka widths as above
  dead latents (cases with `dead`: a random mask, stored as `dead`):
  AuxK      topk_sae.py calculate_topk_aux_loss, written out below as SAELens writes it (residual
            detached, k_aux = d_in // 2, scale = min(num_dead / k_aux, 1), top-k_aux of h' over the
            dead latents, full decode); aux_loss_coefficient * scale * mean_n sum_d (recon - residual)^2
  pre-act   jumprelu_sae.py calculate_pre_act_loss: coef * mean_n sum_i ReLU(theta - h)_i dead_i n_i

Run: python3 scripts/make-kinds-fixtures.py   (needs torch, safetensors)
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'kinds')
torch.set_default_dtype(torch.float64)
D, M, N = 12, 48, 10


def rect(z):
    return ((z > -0.5) & (z < 0.5)).to(z.dtype)


class JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, theta, eps):
        ctx.save_for_backward(h, theta)
        ctx.eps = eps
        return h * (h > theta).to(h.dtype)

    @staticmethod
    def backward(ctx, g):
        h, theta = ctx.saved_tensors
        eps = ctx.eps
        gh = (h > theta).to(h.dtype) * g
        gt = (-(theta / eps) * rect((h - theta) / eps) * g).sum(dim=0)
        return gh, gt, None


class Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, theta, eps):
        ctx.save_for_backward(h, theta)
        ctx.eps = eps
        return (h > theta).to(h.dtype)

    @staticmethod
    def backward(ctx, g):
        h, theta = ctx.saved_tensors
        eps = ctx.eps
        gt = (-(1.0 / eps) * rect((h - theta) / eps) * g).sum(dim=0)
        return torch.zeros_like(h), gt, None


def params(g, kind, zero_rows=()):
    W_dec = torch.randn(M, D, generator=g) * (0.5 + torch.rand(M, 1, generator=g))
    for m in zero_rows:  # a decoder row of norm 0: its norm's gradient is 0 (torch masks it)
        W_dec[m] = 0
    p = {
        'encoder.weight': torch.randn(M, D, generator=g) / D ** 0.5,
        'encoder.bias': torch.randn(M, generator=g) * 0.2,
        'W_dec': W_dec,
        'b_dec': torch.randn(D, generator=g) * 0.1,
    }
    if kind == 'jumprelu':
        p['log_threshold'] = torch.log(torch.rand(M, generator=g) * 0.5 + 0.05)
    return {k: v.clone().requires_grad_(True) for k, v in p.items()}


def run(kind, cfg, seed):
    g = torch.Generator().manual_seed(seed)
    p = params(g, kind, cfg.get('zero_rows', ()))
    x = torch.randn(N, D, generator=g)
    dead = (torch.rand(M, generator=g) < cfg['dead']).to(x.dtype) if 'dead' in cfg else None
    n = p['W_dec'].norm(dim=-1)
    h = (x - p['b_dec']) @ p['encoder.weight'].T + p['encoder.bias']
    aux = {}
    extra = torch.zeros(())  # AuxK or the pre-act loss (outside `sparsity`)
    if kind == 'relu':
        f = torch.relu(h)
        out = f @ p['W_dec'] + p['b_dec']
        if cfg.get('lp_norm', 1.0) == 1.0:
            sparsity = cfg['l1_coefficient'] * (f * n).sum(-1).mean()
        else:
            sparsity = (cfg['l1_coefficient'] * (f * n).norm(p=cfg['lp_norm'], dim=-1)).mean()
    elif kind == 'jumprelu':
        theta = torch.exp(p['log_threshold'])
        eps = cfg['bandwidth']
        f = JumpReLU.apply(h, theta, eps)
        out = f @ p['W_dec'] + p['b_dec']
        if cfg['mode'] == 'step':
            sparsity = cfg['l0_coefficient'] * Step.apply(h, theta, eps).sum(-1).mean()
        else:
            sparsity = cfg['l0_coefficient'] * torch.tanh(cfg['tanh_scale'] * f * n).sum(-1).mean()
        if 'pre_act_loss_coefficient' in cfg:
            pre_act = cfg['pre_act_loss_coefficient'] * ((theta - h).relu() * dead * n).sum(dim=-1).mean()
            aux['aux'] = pre_act.detach()
            extra = pre_act
    else:  # batchtopk / matryoshka / topk
        hs = h * n
        if kind == 'topk':
            top = torch.topk(hs, cfg['k'], dim=-1)
            f = torch.zeros_like(hs).scatter(-1, top.indices, torch.relu(top.values))
        else:
            a = torch.relu(hs)
            kk = int(cfg['k'] * N)
            flat = a.flatten()
            vals, idx = flat.topk(kk, sorted=False)
            f = torch.zeros_like(flat).scatter(-1, idx, vals).view(N, M)
        out = (f / n) @ p['W_dec'] + p['b_dec']
        sparsity = torch.zeros(())
        fd = f.detach()
        pos = fd[fd > 0]
        if kind != 'topk':
            aux['threshold_after'] = torch.tensor((1 - cfg['threshold_lr']) * cfg['threshold_before'] + cfg['threshold_lr'] * pos.min().item())
        if 'aux_loss_coefficient' in cfg:
            residual = (x - out).detach()
            num_dead = int(dead.sum())
            k_aux = x.shape[-1] // 2
            scale = min(num_dead / k_aux, 1.0)
            k_aux = min(k_aux, num_dead)
            auxk_latents = torch.where(dead[None].bool(), hs, -torch.inf)
            auxk_topk = auxk_latents.topk(k_aux, sorted=False)
            auxk_acts = torch.zeros_like(hs).scatter(-1, auxk_topk.indices, auxk_topk.values)
            recons = (auxk_acts / n) @ p['W_dec'] + p['b_dec']
            auxk_loss = cfg['aux_loss_coefficient'] * scale * (recons - residual).pow(2).sum(dim=-1).mean()
            aux['aux'] = auxk_loss.detach()
            aux['aux_latents'] = auxk_acts.detach()
            extra = auxk_loss
        if kind in ('matryoshka', 'topk'):
            for w in cfg['widths']:
                if w == M:
                    continue
                inner = (f[:, :w] / n[:w]) @ p['W_dec'][:w] + p['b_dec']
                sparsity = sparsity + (inner - x).pow(2).sum(-1).mean()
    mse = (out - x).pow(2).sum(-1).mean()
    loss = mse + sparsity + extra
    loss.backward()
    t = {'x': x, 'latents': f.detach(), 'sae_out': out.detach(), 'mse': mse.detach().reshape(1), 'sparsity': sparsity.detach().reshape(1),
         'loss': loss.detach().reshape(1)}
    for k, v in p.items():
        t[k] = v.detach()
        t['grad.' + k] = v.grad.detach()
    for k, v in aux.items():
        t[k] = v.reshape(1) if v.dim() == 0 else v
    if dead is not None:
        t['dead'] = dead
    return t


CASES = {
    'relu_l1': ('relu', {'l1_coefficient': 0.3}),
    'jumprelu_step': ('jumprelu', {'bandwidth': 0.5, 'mode': 'step', 'l0_coefficient': 0.2}),
    'jumprelu_tanh': ('jumprelu', {'bandwidth': 0.5, 'mode': 'tanh', 'l0_coefficient': 0.2, 'tanh_scale': 4.0}),
    'batchtopk': ('batchtopk', {'k': 4.5, 'threshold_lr': 0.01, 'threshold_before': 0.25}),
    'matryoshka': ('matryoshka', {'k': 4.5, 'threshold_lr': 0.01, 'threshold_before': 0.25, 'widths': [8, 24, 48]}),
    # lp_norm != 1 (after the others, so their seeds and files stay as they were)
    'relu_lp2': ('relu', {'l1_coefficient': 0.3, 'lp_norm': 2.0, 'zero_rows': (5,)}),
    'relu_lp1_5': ('relu', {'l1_coefficient': 0.3, 'lp_norm': 1.5, 'zero_rows': (5,)}),
    # Dead latents: AuxK at full scale (num_dead >= d_in // 2) and below it, JumpReLU's pre-act loss.
    'batchtopk_auxk': ('batchtopk', {'k': 4.5, 'threshold_lr': 0.01, 'threshold_before': 0.25, 'dead': 0.5, 'aux_loss_coefficient': 0.7}),
    'matryoshka_auxk': ('matryoshka', {'k': 4.5, 'threshold_lr': 0.01, 'threshold_before': 0.25, 'widths': [8, 24, 48], 'dead': 0.08,
                                       'aux_loss_coefficient': 1.0}),
    'topk_matryoshka_auxk': ('topk', {'k': 3, 'widths': [8, 24], 'dead': 0.3, 'aux_loss_coefficient': 1.0}),
    'jumprelu_preact': ('jumprelu', {'bandwidth': 0.5, 'mode': 'step', 'l0_coefficient': 0.2, 'dead': 0.4, 'pre_act_loss_coefficient': 0.3}),
}

# Cases added side by side keep the seeds they were generated with (the default is 100 + position).
SEEDS = {'batchtopk_auxk': 105, 'matryoshka_auxk': 106, 'topk_matryoshka_auxk': 107, 'jumprelu_preact': 108}

if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    for i, (name, (kind, cfg)) in enumerate(CASES.items()):
        t = run(kind, cfg, SEEDS.get(name, 100 + i))
        meta = {'kind': kind, **{k: str(v) for k, v in cfg.items()}}
        save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, f'{name}.safetensors'), metadata=meta)
    print('wrote', sorted(os.listdir(OUT)))
