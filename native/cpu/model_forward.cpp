// The forward pass: embeddings, decoder blocks, final norm, logits. Every module output lives in
// a buffer that later computation reads, so capture (a copy) and splice (an overwrite) happen at
// the point the module returns, exactly where a transformers forward hook would run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/parallel.h"
#include "cpu/layers.h"
#include "core/model.h"
#include "cpu/vec_math.h"

namespace sparsify {
namespace model {

namespace {

Tensor buffer(int64_t rows, int64_t width) { return Tensor::empty({rows, width}, DType::F32); }

struct Hooks {
  const Model& m;
  const ForwardRequest& req;
  ForwardResult& res;
  int64_t BT;

  // The module is about to run on `x` (its input, [BT, in_width]).
  void in(int id, const float* x) {
    if (id < 0 || !req.want_in[size_t(id)]) return;
    const Module& mod = m.modules[size_t(id)];
    Tensor t = buffer(BT, mod.in_width);
    std::memcpy(t.raw(), x, t.nbytes());
    res.in[size_t(id)] = std::move(t);
  }
  // The module returned `y` ([BT, width]); a splice replaces it for everything downstream.
  void out(int id, float* y) {
    if (id < 0) return;
    const Module& mod = m.modules[size_t(id)];
    if (req.want_out[size_t(id)]) {
      Tensor t = buffer(BT, mod.width);
      std::memcpy(t.raw(), y, t.nbytes());
      res.out[size_t(id)] = std::move(t);
    }
    const Tensor& sp = req.splice[size_t(id)];
    if (sp.defined()) {
      int64_t n = BT * mod.width;
      if (sp.dtype == DType::F32)
        std::memcpy(y, sp.raw(), size_t(n) * 4);
      else
        for (int64_t i = 0; i < n; ++i) y[i] = load_as_f32(sp.raw(), sp.dtype, i);
    }
  }
};

// SPARSIFY_MODEL_PROFILE=1 prints where a forward spent its time (stderr), for bench/ work.
struct Profile {
  bool on = std::getenv("SPARSIFY_MODEL_PROFILE") != nullptr;
  double t[5] = {0, 0, 0, 0, 0};  // linear, attention, norm, activation, other
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  void lap(int k) {
    if (!on) return;
    auto now = std::chrono::steady_clock::now();
    t[k] += std::chrono::duration<double>(now - last).count();
    last = now;
  }
  void print() const {
    if (on)
      std::fprintf(stderr, "model forward: linear %.3fs attention %.3fs norm %.3fs activation %.3fs other %.3fs\n", t[0], t[1],
                   t[2], t[3], t[4]);
  }
};

void add_into(float* x, const float* a, int64_t n) {
  parallel_for(n, 8192, [&](int64_t i0, int64_t i1) {
    add_inplace(x + i0, a + i0, i1 - i0);
  });
}

void embed_rows(const Tensor& table, const int32_t* ids, int64_t n, int64_t width, float scale, float* y) {
  parallel_for(n, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t base = int64_t(ids[r]) * width;
      float* yr = y + r * width;
      if (table.dtype == DType::F32) {
        std::memcpy(yr, table.data<float>() + base, size_t(width) * 4);
      } else {
        for (int64_t i = 0; i < width; ++i) yr[i] = load_as_f32(table.raw(), table.dtype, base + i);
      }
      if (scale != 0.f)
        for (int64_t i = 0; i < width; ++i) yr[i] *= scale;
    }
  });
}

}  // namespace

int needed_layers(const Model& m, const ForwardRequest& req, bool* final_norm) {
  int deepest = -1;
  *final_norm = req.logits;
  for (size_t i = 0; i < m.modules.size(); ++i) {
    if (!req.want_out[i] && !req.want_in[i]) continue;
    const Module& mod = m.modules[i];
    if (mod.role == Role::FinalNorm) *final_norm = true;
    else deepest = std::max(deepest, mod.layer);
  }
  if (*final_norm) deepest = int(m.spec.layers) - 1;
  return deepest;
}

void validate_request(const Model& m, const ForwardRequest& req) {
  const Spec& s = m.spec;
  const Tensor& tk = req.tokens;
  expect_dtype(tk, DType::I32, "tokens");
  if (tk.ndim() != 2) fail(ErrorKind::Shape, "tokens must be [batch, seq], got " + shape_str(tk.shape));
  int64_t B = tk.dim(0), T = tk.dim(1);
  if (B < 1 || T < 1) fail(ErrorKind::Shape, "tokens " + shape_str(tk.shape) + " is empty");
  if (T > s.max_pos)
    fail(ErrorKind::Shape, "sequence length " + std::to_string(T) + " exceeds the model's max_position_embeddings " +
                               std::to_string(s.max_pos));
  const int32_t* ids = tk.data<int32_t>();
  for (int64_t i = 0; i < B * T; ++i)
    if (ids[i] < 0 || ids[i] >= s.vocab)
      fail(ErrorKind::Value, "token id " + std::to_string(ids[i]) + " at [" + std::to_string(i / T) + ", " +
                                 std::to_string(i % T) + "] is outside the vocabulary [0, " + std::to_string(s.vocab) + ")");
  size_t n = m.modules.size();
  SPX_CHECK(req.want_out.size() == n && req.want_in.size() == n && req.splice.size() == n, Internal,
            "forward request sized for another model");
  for (size_t i = 0; i < n; ++i) {
    const Module& mod = m.modules[i];
    if (req.want_in[i] && mod.in_width == 0)
      fail(ErrorKind::Value, "hookpoint '" + mod.name + "' takes token or position ids, it has no activation input to capture");
    const Tensor& sp = req.splice[i];
    if (!sp.defined()) continue;
    expect_float(sp, ("splice['" + mod.name + "']").c_str());
    if (sp.numel() != B * T * mod.width || sp.dim(-1) != mod.width)
      fail(ErrorKind::Shape, "splice for '" + mod.name + "' has shape " + shape_str(sp.shape) + ", expected [" +
                                 std::to_string(B * T) + ", " + std::to_string(mod.width) + "]");
  }
  if (req.resume_layer >= 0) {
    const int R = req.resume_layer;
    if (R >= s.layers)
      fail(ErrorKind::Value, "resume layer " + std::to_string(R) + " is outside the model's " + std::to_string(s.layers) + " layers");
    const Tensor& h = req.resume_hidden;
    expect_dtype(h, DType::F32, "resume hidden state");
    if (h.numel() != B * T * s.hidden || h.dim(-1) != s.hidden)
      fail(ErrorKind::Shape, "resume hidden state has shape " + shape_str(h.shape) + ", expected [" + std::to_string(B * T) + ", " +
                                 std::to_string(s.hidden) + "]");
    // Modules that run before the resumed block cannot be captured or spliced.
    for (size_t i = 0; i < n; ++i)
      if ((req.want_out[i] || req.want_in[i] || req.splice[i].defined()) && m.modules[i].layer < R &&
          m.modules[i].role != Role::FinalNorm)
        fail(ErrorKind::Value, "module '" + m.modules[i].name + "' runs before the resumed layer " + std::to_string(R));
  }
  if (req.logits && !m.w.lm_head.defined())
    fail(ErrorKind::Value, "this checkpoint has no language-model head (lm_head), so logits cannot be computed");
}

ForwardResult forward(const Model& m, const ForwardRequest& req) {
  const Spec& s = m.spec;
  const Weights& W = m.w;
  const int64_t B = req.tokens.dim(0), T = req.tokens.dim(1), BT = B * T;
  const int64_t H = s.hidden, I = s.inter, hd = s.head_dim, QW = s.heads * hd, KW = s.kv_heads * hd;
  const int32_t* ids = req.tokens.data<int32_t>();
  ForwardResult res;
  res.out.resize(m.modules.size());
  res.in.resize(m.modules.size());
  Hooks hk{m, req, res, BT};
  auto id = [&](int layer, Role r) { return m.id(layer, r); };

  bool final_norm = false;
  int deepest = needed_layers(m, req, &final_norm);
  bool any = req.logits;
  for (size_t i = 0; i < m.modules.size(); ++i) any = any || req.want_out[i] || req.want_in[i];
  if (!any) return res;

  // ---- embeddings (or the resumed residual stream)
  Tensor xt = buffer(BT, H);
  float* x = xt.data<float>();
  const int first_layer = std::max(req.resume_layer, 0);
  if (req.resume_layer >= 0) {
    std::memcpy(x, req.resume_hidden.raw(), size_t(BT * H) * 4);
  } else {
    embed_rows(W.embed, ids, BT, H, s.embed_scale, x);
    hk.out(id(-1, Role::Embed), x);
    if (s.family == Family::GPT2) {
      Tensor pt = buffer(BT, H);
      float* pe = pt.data<float>();
      std::vector<int32_t> pos(static_cast<size_t>(BT));
      for (int64_t r = 0; r < BT; ++r) pos[size_t(r)] = int32_t(r % T);
      embed_rows(W.pos_embed, pos.data(), BT, H, 0.f, pe);
      hk.out(id(-1, Role::PosEmbed), pe);
      add_into(x, pe, BT * H);
    }
    if (s.family == Family::GPT2 || s.family == Family::NeoX) {
      hk.in(id(-1, Role::EmbedDropout), x);
      hk.out(id(-1, Role::EmbedDropout), x);
    }
  }

  // ---- scratch
  const bool fused = s.family == Family::GPT2 || s.family == Family::NeoX;
  Tensor h1t = buffer(BT, H), h2t = buffer(BT, H), attnt = buffer(BT, H), mot = buffer(BT, H), tmpt = buffer(BT, H);
  Tensor ctxt = buffer(BT, QW);
  Tensor qkvt, qt, kt, vt, upt;
  if (fused) qkvt = buffer(BT, 3 * H);
  else {
    qt = buffer(BT, QW);
    kt = buffer(BT, KW);
    vt = buffer(BT, KW);
    upt = buffer(BT, I);
  }
  Tensor fct = buffer(BT, I), actt = buffer(BT, I);
  float *h1 = h1t.data<float>(), *h2 = h2t.data<float>(), *att = attnt.data<float>(), *mo = mot.data<float>(),
        *tmp = tmpt.data<float>(), *ctx = ctxt.data<float>(), *fc = fct.data<float>(), *act = actt.data<float>();
  Rope rope = rope_tables(s, T);
  Profile prof;
  auto lin = [&](const float* in, int64_t K, const Tensor& Wt, bool conv, const std::vector<float>& bias, float* y, int64_t N) {
    prof.lap(4);
    linear(in, BT, K, Wt, conv, bias, y, N);
    prof.lap(0);
  };
  auto actf = [&](const float* in, float* y, int64_t n) {
    prof.lap(4);
    activation(s.act, in, y, n);
    prof.lap(3);
  };

  // MLP on `in` (already normed) into mo; the module ids of layer l.
  auto mlp = [&](int l, const LayerWeights& L, const float* in) {
    hk.in(id(l, Role::Mlp), in);
    if (s.family == Family::GPT2 || s.family == Family::NeoX) {
      bool conv = s.family == Family::GPT2;
      hk.in(id(l, Role::Fc), in);
      lin(in, H, L.fc_w, conv, L.fc_bf, fc, I);
      hk.out(id(l, Role::Fc), fc);
      hk.in(id(l, Role::ActFn), fc);
      actf(fc, act, BT * I);
      hk.out(id(l, Role::ActFn), act);
      hk.in(id(l, Role::Down), act);
      lin(act, I, L.down_w, conv, L.down_bf, mo, H);
      hk.out(id(l, Role::Down), mo);
      if (s.family == Family::GPT2) {
        hk.in(id(l, Role::MlpDropout), mo);
        hk.out(id(l, Role::MlpDropout), mo);
      }
    } else {
      float* up = upt.data<float>();
      hk.in(id(l, Role::Gate), in);
      lin(in, H, L.gate_w, false, L.gate_bf, fc, I);
      hk.out(id(l, Role::Gate), fc);
      hk.in(id(l, Role::ActFn), fc);
      actf(fc, act, BT * I);
      hk.out(id(l, Role::ActFn), act);
      hk.in(id(l, Role::Up), in);
      lin(in, H, L.up_w, false, L.up_bf, up, I);
      hk.out(id(l, Role::Up), up);
      parallel_for(BT * I, 8192, [&](int64_t i0, int64_t i1) {
        mul_inplace(up + i0, act + i0, i1 - i0);
      });
      hk.in(id(l, Role::Down), up);
      lin(up, I, L.down_w, false, L.down_bf, mo, H);
      hk.out(id(l, Role::Down), mo);
    }
    hk.out(id(l, Role::Mlp), mo);
  };

  // Self-attention on `in` (already normed) into att.
  auto self_attention = [&](int l, const LayerWeights& L, const float* in) {
    hk.in(id(l, Role::Attn), in);
    HeadLayout q, k, v;
    if (fused) {
      float* qkv = qkvt.data<float>();
      hk.in(id(l, Role::QKV), in);
      lin(in, H, L.qkv_w, s.family == Family::GPT2, L.qkv_bf, qkv, 3 * H);
      hk.out(id(l, Role::QKV), qkv);
      if (s.family == Family::GPT2) {  // [q heads | k heads | v heads]
        q = {qkv, 3 * H, 0, hd};
        k = {qkv, 3 * H, H, hd};
        v = {qkv, 3 * H, 2 * H, hd};
      } else {  // NeoX: per head [q | k | v]
        q = {qkv, 3 * H, 0, 3 * hd};
        k = {qkv, 3 * H, hd, 3 * hd};
        v = {qkv, 3 * H, 2 * hd, 3 * hd};
        apply_rope(rope, qkv, B, T, 3 * H, 0, s.heads, 3 * hd);
        apply_rope(rope, qkv, B, T, 3 * H, hd, s.heads, 3 * hd);
      }
    } else {
      float *qp = qt.data<float>(), *kp = kt.data<float>(), *vp = vt.data<float>();
      hk.in(id(l, Role::Q), in);
      lin(in, H, L.q_w, false, L.q_bf, qp, QW);
      hk.out(id(l, Role::Q), qp);
      hk.in(id(l, Role::K), in);
      lin(in, H, L.k_w, false, L.k_bf, kp, KW);
      hk.out(id(l, Role::K), kp);
      hk.in(id(l, Role::V), in);
      lin(in, H, L.v_w, false, L.v_bf, vp, KW);
      hk.out(id(l, Role::V), vp);
      apply_rope(rope, qp, B, T, QW, 0, s.heads, hd);
      apply_rope(rope, kp, B, T, KW, 0, s.kv_heads, hd);
      q = {qp, QW, 0, hd};
      k = {kp, KW, 0, hd};
      v = {vp, KW, 0, hd};
    }
    float scale = s.attn_scale;
    if (s.scale_by_inverse_layer) scale /= float(l + 1);
    prof.lap(4);
    attention(q, k, v, ctx, B, T, s.heads, s.kv_heads, hd, scale, s.attn_softcap, s.sliding_window[size_t(l)]);
    prof.lap(1);
    hk.in(id(l, Role::O), ctx);
    lin(ctx, QW, L.o_w, s.family == Family::GPT2, L.o_bf, att, H);
    hk.out(id(l, Role::O), att);
    if (s.family == Family::GPT2) {
      hk.in(id(l, Role::AttnResidDropout), att);
      hk.out(id(l, Role::AttnResidDropout), att);
    }
    hk.out(id(l, Role::Attn), att);
  };

  auto norm = [&](int mod_id, const float* in, float* out, const std::vector<float>& w, const std::vector<float>& b) {
    hk.in(mod_id, in);
    prof.lap(4);
    norm_rows(s.norm, in, out, BT, H, w, b, s.eps);
    prof.lap(2);
    hk.out(mod_id, out);
  };

  res.layers_run = deepest + 1 - first_layer;
  for (int l = first_layer; l <= deepest; ++l) {
    const LayerWeights& L = W.layers[size_t(l)];
    hk.in(id(l, Role::Block), x);
    norm(id(l, Role::Norm1), x, h1, L.ln1_w, L.ln1_b);
    self_attention(l, L, h1);
    switch (s.family) {
      case Family::GPT2:
        add_into(x, att, BT * H);
        norm(id(l, Role::Norm2), x, h2, L.ln2_w, L.ln2_b);
        mlp(l, L, h2);
        add_into(x, mo, BT * H);
        break;
      case Family::NeoX:
        hk.in(id(l, Role::PostAttnDropout), att);
        hk.out(id(l, Role::PostAttnDropout), att);
        if (s.parallel_residual) {
          norm(id(l, Role::Norm2), x, h2, L.ln2_w, L.ln2_b);
          mlp(l, L, h2);
          hk.in(id(l, Role::PostMlpDropout), mo);
          hk.out(id(l, Role::PostMlpDropout), mo);
          parallel_for(BT * H, 8192, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) x[i] = (mo[i] + att[i]) + x[i];
          });
        } else {
          add_into(x, att, BT * H);
          norm(id(l, Role::Norm2), x, h2, L.ln2_w, L.ln2_b);
          mlp(l, L, h2);
          hk.in(id(l, Role::PostMlpDropout), mo);
          hk.out(id(l, Role::PostMlpDropout), mo);
          add_into(x, mo, BT * H);
        }
        break;
      case Family::Llama:
      case Family::Gemma:
        add_into(x, att, BT * H);
        norm(id(l, Role::Norm2), x, h2, L.ln2_w, L.ln2_b);
        mlp(l, L, h2);
        add_into(x, mo, BT * H);
        break;
      case Family::Gemma2:
        norm(id(l, Role::Norm2), att, tmp, L.ln2_w, L.ln2_b);
        add_into(x, tmp, BT * H);
        norm(id(l, Role::PreFF), x, h2, L.pre_ff_w, {});
        mlp(l, L, h2);
        norm(id(l, Role::PostFF), mo, tmp, L.post_ff_w, {});
        add_into(x, tmp, BT * H);
        break;
    }
    hk.out(id(l, Role::Block), x);
  }

  prof.lap(4);
  if (!final_norm) {
    prof.print();
    return res;
  }
  norm(id(-1, Role::FinalNorm), x, h1, W.final_w, W.final_b);
  if (req.logits) {
    int64_t V = s.vocab;
    Tensor lg = Tensor::empty({B, T, V}, DType::F32);
    float* lp = lg.data<float>();
    lin(h1, H, W.lm_head, false, {}, lp, V);
    if (s.final_softcap > 0.f) {
      float cap = s.final_softcap;
      parallel_for(BT * V, 8192, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) lp[i] = std::tanh(lp[i] / cap) * cap;
      });
    }
    res.logits = std::move(lg);
  }
  prof.lap(4);
  prof.print();
  return res;
}

}  // namespace model
}  // namespace sparsify
