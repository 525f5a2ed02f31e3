// The GPU transformer forward (see model_forward.h). The structure of resident_forward is a copy
// of model::forward (native/cpu/model_forward.cpp) with host loops replaced by kernels on one
// stream: same module order, same capture points (a stream-ordered device copy where the CPU
// forward memcpys), same splice points (a stream-ordered overwrite), same early stop after the
// deepest needed block. Keep the two in step when either changes.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cuda/common.cuh"
#include "cuda/convert.cuh"
#include "cuda/cuda_context.h"
#include "cuda/device_ops.h"
#include "cpu/layers.h"
#include "cuda/model_forward.h"

namespace sparsify {
namespace cuda {

using model::Family;
using model::ForwardRequest;
using model::ForwardResult;
using model::Model;
using model::Role;
using model::Spec;

namespace {

// A plain device allocation for the resident weights (cudaFree waits for work still reading it).
class DevMem {
 public:
  DevMem() = default;
  explicit DevMem(size_t bytes) : bytes_(bytes) {
    if (bytes) CUDA_CHECK(cudaMalloc(&p_, bytes));
  }
  ~DevMem() {
    if (p_) cudaFree(p_);
  }
  DevMem(DevMem&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr; o.bytes_ = 0; }
  DevMem& operator=(DevMem&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
  void* get() const { return p_; }
  float* f32() const { return static_cast<float*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// y = x · Wᵀ (+ b): W bf16 [N, Kp], b f32 [N] or none.
struct Linear {
  DevMem w, b;
  int64_t N = 0, K = 0, Kp = 0;
};

struct LayerDev {
  Linear qkv, q, k, v, o, fc, gate, up, down;
  DevMem ln1_w, ln1_b, ln2_w, ln2_b, pre_ff_w, post_ff_w;
};

// ---- small kernels of the forward (f32, grid-stride)
unsigned grid_for(int64_t n) { return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 65535LL * 4))); }

// y[r] = table[ids ? ids[r] : r % T] (· scale when scale != 0); table of any float dtype.
__global__ void embed_kernel(const void* __restrict__ table, DType tdt, const int* __restrict__ ids, int64_t rows,
                             int64_t T, int64_t width, float scale, float* __restrict__ y) {
  const int64_t n = rows * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / width, c = i - r * width;
    int64_t row = ids ? int64_t(ids[r]) : r % T;
    float v = load_f32(table, tdt, row * width + c);
    if (scale != 0.f) v *= scale;
    y[i] = v;
  }
}

__global__ void add_kernel(float* __restrict__ x, const float* __restrict__ a, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = x[i] + a[i];
}

// NeoX parallel residual: x = (mlp + attn) + x, in that order (as HF).
__global__ void add_parallel_kernel(float* __restrict__ x, const float* __restrict__ mo, const float* __restrict__ att,
                                    int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = (mo[i] + att[i]) + x[i];
}

// up = act * up (gated MLP)
__global__ void mul_kernel(float* __restrict__ up, const float* __restrict__ act, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    up[i] = act[i] * up[i];
}

__global__ void softcap_kernel(float* __restrict__ x, int64_t n, float cap) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = tanhf(x[i] / cap) * cap;
}

// HF rotate_half rotary embedding in place (model::apply_rope): one thread per (row, head, j <
// half); element j of head h of row r is buf[r·stride + offset + h·head_stride + j], partner j + half.
__global__ void rope_kernel(float* __restrict__ buf, const float* __restrict__ cos_t, const float* __restrict__ sin_t,
                            int64_t rows, int64_t T, int64_t half, int64_t stride, int64_t offset, int64_t heads,
                            int64_t head_stride) {
  const int64_t n = rows * heads * half;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    int64_t j = e % half, rh = e / half, h = rh % heads, r = rh / heads, t = r % T;
    float* p = buf + r * stride + offset + h * head_stride;
    float c = cos_t[t * half + j], s = sin_t[t * half + j];
    float x1 = p[j], x2 = p[j + half];
    p[j] = x1 * c + (-x2) * s;
    p[j + half] = x2 * c + x1 * s;
  }
}

DevMem upload_f32(const std::vector<float>& v, cudaStream_t s, int64_t& bytes) {
  if (v.empty()) return DevMem();
  DevMem d(v.size() * 4);
  CUDA_CHECK(cudaMemcpyAsync(d.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice, s));
  bytes += int64_t(d.bytes());
  return d;
}

// W nn.Linear [N, K] or Conv1D [K, N] (any float dtype) -> bf16 [N, pad32(K)].
Linear upload_linear(const Tensor& W, bool conv1d, const std::vector<float>& bias, cudaStream_t s, int64_t& bytes) {
  Linear L;
  if (!W.defined()) return L;
  L.N = conv1d ? W.dim(1) : W.dim(0);
  L.K = conv1d ? W.dim(0) : W.dim(1);
  L.Kp = pad32(L.K);
  L.w = DevMem(size_t(L.N * L.Kp) * 2);
  {
    DeviceTensor dw = upload(W, s);  // temporary copy in the file dtype, freed stream-ordered
    if (conv1d)
      transpose_convert<__nv_bfloat16>(dw.data(), W.dtype, L.K, L.N, static_cast<__nv_bfloat16*>(L.w.get()), L.Kp, s);
    else
      convert_pad<__nv_bfloat16>(dw.data(), W.dtype, L.N, L.K, nullptr, DType::F32,
                                 static_cast<__nv_bfloat16*>(L.w.get()), L.Kp, s);
  }
  bytes += int64_t(L.w.bytes());
  L.b = upload_f32(bias, s, bytes);
  return L;
}

DevMem upload_raw(const Tensor& t, cudaStream_t s, int64_t& bytes) {
  if (!t.defined()) return DevMem();
  DevMem d(t.nbytes());
  CUDA_CHECK(cudaMemcpyAsync(d.get(), t.raw(), t.nbytes(), cudaMemcpyHostToDevice, s));
  bytes += int64_t(d.bytes());
  return d;
}

cuda::Act act_of(model::Act a) {
  switch (a) {
    case model::Act::GeluTanh:
    case model::Act::GeluFast: return cuda::Act::GeluTanh;  // the same function (see layers.cpp)
    case model::Act::GeluErf: return cuda::Act::GeluErf;
    case model::Act::QuickGelu: return cuda::Act::QuickGelu;
    case model::Act::Silu: return cuda::Act::Silu;
    case model::Act::Relu: return cuda::Act::Relu;
  }
  return cuda::Act::Relu;
}

// A new device tensor (f32) for a captured activation (freed on the stream when JS drops it).
Tensor capture_tensor(const std::vector<int64_t>& shape, cudaStream_t s) { return device_empty(shape, DType::F32, s); }

// Capture and splice at module boundaries (model::forward's Hooks, on the device).
struct DevHooks {
  const Model& m;
  const ForwardRequest& req;
  ForwardResult& res;
  int64_t BT;
  cudaStream_t s;

  void in(int id, const float* x) {
    if (id < 0 || !req.want_in[size_t(id)]) return;
    const model::Module& mod = m.modules[size_t(id)];
    Tensor t = capture_tensor({BT, mod.in_width}, s);
    CUDA_CHECK(cudaMemcpyAsync(t.raw(), x, t.nbytes(), cudaMemcpyDeviceToDevice, s));
    res.in[size_t(id)] = std::move(t);
  }
  void out(int id, float* y) {
    if (id < 0) return;
    const model::Module& mod = m.modules[size_t(id)];
    if (req.want_out[size_t(id)]) {
      Tensor t = capture_tensor({BT, mod.width}, s);
      CUDA_CHECK(cudaMemcpyAsync(t.raw(), y, t.nbytes(), cudaMemcpyDeviceToDevice, s));
      res.out[size_t(id)] = std::move(t);
    }
    const Tensor& sp = req.splice[size_t(id)];
    if (sp.defined()) {
      DeviceTensor d = upload(sp, s);  // a view when the splice tensor already lives on the device
      convert_pad<float>(d.data(), sp.dtype, BT, mod.width, nullptr, DType::F32, y, mod.width, s);
    }
  }
};

}  // namespace

struct ResidentWeights {
  DevMem embed, pos_embed;  // file dtype
  DType embed_dtype = DType::F32, pos_dtype = DType::F32;
  Linear lm_head;
  DevMem final_w, final_b;
  std::vector<LayerDev> layers;
};

ResidentModel::ResidentModel() = default;
ResidentModel::~ResidentModel() = default;

std::shared_ptr<ResidentModel> make_resident_model(std::shared_ptr<const Model> m) {
  const Spec& sp = m->spec;
  if (sp.head_dim > attention_max_head_dim())
    fail(ErrorKind::Value, "the GPU forward supports head_dim up to " + std::to_string(attention_max_head_dim()) +
                               ", this model has " + std::to_string(sp.head_dim));
  auto rm = std::make_shared<ResidentModel>();
  rm->host = m;
  rm->dev = std::make_unique<ResidentWeights>();
  ResidentWeights& D = *rm->dev;
  const model::Weights& W = m->w;
  int64_t& bytes = rm->device_bytes;
  Session ses;
  cudaStream_t s = ses.stream();
  const bool conv = sp.family == Family::GPT2;
  D.embed = upload_raw(W.embed, s, bytes);
  D.embed_dtype = W.embed.dtype;
  if (W.pos_embed.defined()) {
    D.pos_embed = upload_raw(W.pos_embed, s, bytes);
    D.pos_dtype = W.pos_embed.dtype;
  }
  if (W.lm_head.defined()) D.lm_head = upload_linear(W.lm_head, false, {}, s, bytes);
  D.final_w = upload_f32(W.final_w, s, bytes);
  D.final_b = upload_f32(W.final_b, s, bytes);
  D.layers.resize(W.layers.size());
  for (size_t l = 0; l < W.layers.size(); ++l) {
    const model::LayerWeights& L = W.layers[l];
    LayerDev& d = D.layers[l];
    d.qkv = upload_linear(L.qkv_w, conv, L.qkv_bf, s, bytes);
    d.q = upload_linear(L.q_w, false, L.q_bf, s, bytes);
    d.k = upload_linear(L.k_w, false, L.k_bf, s, bytes);
    d.v = upload_linear(L.v_w, false, L.v_bf, s, bytes);
    d.o = upload_linear(L.o_w, conv, L.o_bf, s, bytes);
    d.fc = upload_linear(L.fc_w, conv, L.fc_bf, s, bytes);
    d.gate = upload_linear(L.gate_w, false, L.gate_bf, s, bytes);
    d.up = upload_linear(L.up_w, false, L.up_bf, s, bytes);
    d.down = upload_linear(L.down_w, conv, L.down_bf, s, bytes);
    d.ln1_w = upload_f32(L.ln1_w, s, bytes);
    d.ln1_b = upload_f32(L.ln1_b, s, bytes);
    d.ln2_w = upload_f32(L.ln2_w, s, bytes);
    d.ln2_b = upload_f32(L.ln2_b, s, bytes);
    d.pre_ff_w = upload_f32(L.pre_ff_w, s, bytes);
    d.post_ff_w = upload_f32(L.post_ff_w, s, bytes);
    ses.sync();  // bounds the temporary file-dtype copies to one layer's worth
  }
  ses.sync();
  // The temporary file-dtype copies came from the stream-ordered pool, which keeps freed blocks
  // (release threshold = max, cuda_context.cu): without a trim the largest one (the
  // embedding-sized lm_head, GBs for an f32 checkpoint) would stay reserved for the process' life,
  // unavailable to cudaMalloc and to other processes. Every temporary is freed by now (synced).
  cudaMemPool_t pool;
  if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
  cudaGetLastError();  // a failed trim only costs memory
  return rm;
}

ForwardResult resident_forward(const ResidentModel& rm, const ForwardRequest& req) {
  const Model& m = *rm.host;
  const Spec& s = m.spec;
  const ResidentWeights& W = *rm.dev;
  const int64_t B = req.tokens.dim(0), T = req.tokens.dim(1), BT = B * T;
  const int64_t H = s.hidden, I = s.inter, hd = s.head_dim, QW = s.heads * hd, KW = s.kv_heads * hd;
  ForwardResult res;
  res.out.resize(m.modules.size());
  res.in.resize(m.modules.size());
  auto id = [&](int layer, Role r) { return m.id(layer, r); };

  bool final_norm = false;
  int deepest = model::needed_layers(m, req, &final_norm);
  bool any = req.logits;
  for (size_t i = 0; i < m.modules.size(); ++i) any = any || req.want_out[i] || req.want_in[i];
  if (!any) return res;

  Session ses;
  cudaStream_t st = ses.stream();
  DevHooks hk{m, req, res, BT, st};
  auto buffer = [&](int64_t width) { return DeviceBuffer(size_t(BT * width) * 4, st); };
  auto launch_n = [](int64_t n) { return grid_for(n); };

  // ---- embeddings (or the resumed residual stream, host or device)
  DeviceBuffer ids(size_t(BT) * 4, st);
  CUDA_CHECK(cudaMemcpyAsync(ids.get(), req.tokens.raw(), size_t(BT) * 4, cudaMemcpyHostToDevice, st));
  DeviceBuffer xt = buffer(H);
  float* x = xt.as<float>();
  const int first_layer = std::max(req.resume_layer, 0);
  if (req.resume_layer >= 0) {
    CUDA_CHECK(cudaMemcpyAsync(x, req.resume_hidden.raw(), size_t(BT * H) * 4, cudaMemcpyDefault, st));
  } else {
    SPX_LAUNCH(launch_n(BT * H), 256, 0, st, embed_kernel)(W.embed.get(), W.embed_dtype, ids.as<int>(), BT, T, H, s.embed_scale, x);
    CUDA_CHECK_LAUNCH();
    hk.out(id(-1, Role::Embed), x);
    DeviceBuffer pt;
    if (s.family == Family::GPT2) {
      pt = buffer(H);
      float* pe = pt.as<float>();
      SPX_LAUNCH(launch_n(BT * H), 256, 0, st, embed_kernel)(W.pos_embed.get(), W.pos_dtype, nullptr, BT, T, H, 0.f, pe);
      CUDA_CHECK_LAUNCH();
      hk.out(id(-1, Role::PosEmbed), pe);
      SPX_LAUNCH(launch_n(BT * H), 256, 0, st, add_kernel)(x, pe, BT * H);
      CUDA_CHECK_LAUNCH();
    }
    if (s.family == Family::GPT2 || s.family == Family::NeoX) {
      hk.in(id(-1, Role::EmbedDropout), x);
      hk.out(id(-1, Role::EmbedDropout), x);
    }
  }

  // ---- scratch
  const bool fused = s.family == Family::GPT2 || s.family == Family::NeoX;
  DeviceBuffer h1t = buffer(H), h2t = buffer(H), attnt = buffer(H), mot = buffer(H), tmpt = buffer(H), ctxt = buffer(QW);
  DeviceBuffer qkvt, qt, kt, vt, upt;
  if (fused) qkvt = buffer(3 * H);
  else {
    qt = buffer(QW);
    kt = buffer(KW);
    vt = buffer(KW);
    upt = buffer(I);
  }
  DeviceBuffer fct = buffer(I), actt = buffer(I);
  // bf16 copy of a GEMM's input rows, sized for the widest K (H, I or QW).
  const int64_t maxKp = pad32(std::max({H, I, QW}));
  DeviceBuffer abf(size_t(BT * maxKp) * 2, st);
  float *h1 = h1t.as<float>(), *h2 = h2t.as<float>(), *att = attnt.as<float>(), *mo = mot.as<float>(),
        *tmp = tmpt.as<float>(), *ctx = ctxt.as<float>(), *fc = fct.as<float>(), *act = actt.as<float>();

  // Rotary tables: the CPU forward's (model::rope_tables), uploaded once per forward.
  model::Rope rope = model::rope_tables(s, T);
  DeviceBuffer rope_cos, rope_sin;
  if (rope.half > 0) {
    rope_cos = DeviceBuffer(rope.cos.size() * 4, st);
    rope_sin = DeviceBuffer(rope.sin.size() * 4, st);
    CUDA_CHECK(cudaMemcpyAsync(rope_cos.get(), rope.cos.data(), rope.cos.size() * 4, cudaMemcpyHostToDevice, st));
    CUDA_CHECK(cudaMemcpyAsync(rope_sin.get(), rope.sin.data(), rope.sin.size() * 4, cudaMemcpyHostToDevice, st));
  }
  auto apply_rope = [&](float* buf, int64_t stride, int64_t offset, int64_t heads, int64_t head_stride) {
    if (rope.half == 0) return;
    int64_t n = BT * heads * rope.half;
    SPX_LAUNCH(launch_n(n), 256, 0, st, rope_kernel)(buf, rope_cos.as<float>(), rope_sin.as<float>(), BT, T, rope.half, stride,
                                             offset, heads, head_stride);
    CUDA_CHECK_LAUNCH();
  };
  auto lin = [&](const float* in, const Linear& L, float* y) {
    convert_pad<__nv_bfloat16>(in, DType::F32, BT, L.K, nullptr, DType::F32, abf.as<__nv_bfloat16>(), L.Kp, st);
    gemm_bf16_dev(abf.get(), L.w.get(), L.b.get() ? L.b.f32() : nullptr, y, BT, L.N, L.Kp, st);
  };
  const cuda::Act act_kind = act_of(s.act);
  auto actf = [&](const float* in, float* y, int64_t n) { activation_dev(in, n, act_kind, y, st); };
  auto add_into = [&](float* dst, const float* a) {
    SPX_LAUNCH(launch_n(BT * H), 256, 0, st, add_kernel)(dst, a, BT * H);
    CUDA_CHECK_LAUNCH();
  };

  // MLP on `in` (already normed) into mo.
  auto mlp = [&](int l, const LayerDev& L, const float* in) {
    hk.in(id(l, Role::Mlp), in);
    if (s.family == Family::GPT2 || s.family == Family::NeoX) {
      hk.in(id(l, Role::Fc), in);
      lin(in, L.fc, fc);
      hk.out(id(l, Role::Fc), fc);
      hk.in(id(l, Role::ActFn), fc);
      actf(fc, act, BT * I);
      hk.out(id(l, Role::ActFn), act);
      hk.in(id(l, Role::Down), act);
      lin(act, L.down, mo);
      hk.out(id(l, Role::Down), mo);
      if (s.family == Family::GPT2) {
        hk.in(id(l, Role::MlpDropout), mo);
        hk.out(id(l, Role::MlpDropout), mo);
      }
    } else {
      float* up = upt.as<float>();
      hk.in(id(l, Role::Gate), in);
      lin(in, L.gate, fc);
      hk.out(id(l, Role::Gate), fc);
      hk.in(id(l, Role::ActFn), fc);
      actf(fc, act, BT * I);
      hk.out(id(l, Role::ActFn), act);
      hk.in(id(l, Role::Up), in);
      lin(in, L.up, up);
      hk.out(id(l, Role::Up), up);
      SPX_LAUNCH(launch_n(BT * I), 256, 0, st, mul_kernel)(up, act, BT * I);
      CUDA_CHECK_LAUNCH();
      hk.in(id(l, Role::Down), up);
      lin(up, L.down, mo);
      hk.out(id(l, Role::Down), mo);
    }
    hk.out(id(l, Role::Mlp), mo);
  };

  // Self-attention on `in` (already normed) into att.
  auto self_attention = [&](int l, const LayerDev& L, const float* in) {
    hk.in(id(l, Role::Attn), in);
    HeadsView q{}, k{}, v{};
    if (fused) {
      float* qkv = qkvt.as<float>();
      hk.in(id(l, Role::QKV), in);
      lin(in, L.qkv, qkv);
      hk.out(id(l, Role::QKV), qkv);
      if (s.family == Family::GPT2) {  // [q heads | k heads | v heads]
        q = {qkv, 3 * H, hd};
        k = {qkv + H, 3 * H, hd};
        v = {qkv + 2 * H, 3 * H, hd};
      } else {  // NeoX: per head [q | k | v]
        q = {qkv, 3 * H, 3 * hd};
        k = {qkv + hd, 3 * H, 3 * hd};
        v = {qkv + 2 * hd, 3 * H, 3 * hd};
        apply_rope(qkv, 3 * H, 0, s.heads, 3 * hd);
        apply_rope(qkv, 3 * H, hd, s.heads, 3 * hd);
      }
    } else {
      float *qp = qt.as<float>(), *kp = kt.as<float>(), *vp = vt.as<float>();
      hk.in(id(l, Role::Q), in);
      lin(in, L.q, qp);
      hk.out(id(l, Role::Q), qp);
      hk.in(id(l, Role::K), in);
      lin(in, L.k, kp);
      hk.out(id(l, Role::K), kp);
      hk.in(id(l, Role::V), in);
      lin(in, L.v, vp);
      hk.out(id(l, Role::V), vp);
      apply_rope(qp, QW, 0, s.heads, hd);
      apply_rope(kp, KW, 0, s.kv_heads, hd);
      q = {qp, QW, hd};
      k = {kp, KW, hd};
      v = {vp, KW, hd};
    }
    float scale = s.attn_scale;
    if (s.scale_by_inverse_layer) scale /= float(l + 1);
    attention_dev(q, k, v, ctx, B, T, s.heads, s.kv_heads, hd, scale, s.attn_softcap, s.sliding_window[size_t(l)], st);
    hk.in(id(l, Role::O), ctx);
    lin(ctx, L.o, att);
    hk.out(id(l, Role::O), att);
    if (s.family == Family::GPT2) {
      hk.in(id(l, Role::AttnResidDropout), att);
      hk.out(id(l, Role::AttnResidDropout), att);
    }
    hk.out(id(l, Role::Attn), att);
  };

  const float eps = float(s.eps);
  auto norm = [&](int mod_id, const float* in, float* out, const DevMem& w, const DevMem& b) {
    hk.in(mod_id, in);
    if (s.norm == model::Norm::LayerNorm)
      layer_norm_dev(in, w.f32(), b.get() ? b.f32() : nullptr, BT, H, eps, out, st);
    else
      rms_norm_dev(in, w.f32(), BT, H, eps, s.norm == model::Norm::RMSOnePlus, out, st);
    hk.out(mod_id, out);
  };
  const DevMem none;

  res.layers_run = deepest + 1 - first_layer;
  for (int l = first_layer; l <= deepest; ++l) {
    const LayerDev& L = W.layers[size_t(l)];
    hk.in(id(l, Role::Block), x);
    norm(id(l, Role::Norm1), x, h1, L.ln1_w, L.ln1_b);
    self_attention(l, L, h1);
    switch (s.family) {
      case Family::GPT2:
        add_into(x, att);
        norm(id(l, Role::Norm2), x, h2, L.ln2_w, L.ln2_b);
        mlp(l, L, h2);
        add_into(x, mo);
        break;
      case Family::NeoX:
        hk.in(id(l, Role::PostAttnDropout), att);
        hk.out(id(l, Role::PostAttnDropout), att);
        if (s.parallel_residual) {
          norm(id(l, Role::Norm2), x, h2, L.ln2_w, L.ln2_b);
          mlp(l, L, h2);
          hk.in(id(l, Role::PostMlpDropout), mo);
          hk.out(id(l, Role::PostMlpDropout), mo);
          SPX_LAUNCH(launch_n(BT * H), 256, 0, st, add_parallel_kernel)(x, mo, att, BT * H);
          CUDA_CHECK_LAUNCH();
        } else {
          add_into(x, att);
          norm(id(l, Role::Norm2), x, h2, L.ln2_w, L.ln2_b);
          mlp(l, L, h2);
          hk.in(id(l, Role::PostMlpDropout), mo);
          hk.out(id(l, Role::PostMlpDropout), mo);
          add_into(x, mo);
        }
        break;
      case Family::Llama:
      case Family::Gemma:
        add_into(x, att);
        norm(id(l, Role::Norm2), x, h2, L.ln2_w, L.ln2_b);
        mlp(l, L, h2);
        add_into(x, mo);
        break;
      case Family::Gemma2:
        norm(id(l, Role::Norm2), att, tmp, L.ln2_w, L.ln2_b);
        add_into(x, tmp);
        norm(id(l, Role::PreFF), x, h2, L.pre_ff_w, none);
        mlp(l, L, h2);
        norm(id(l, Role::PostFF), mo, tmp, L.post_ff_w, none);
        add_into(x, tmp);
        break;
    }
    hk.out(id(l, Role::Block), x);
  }

  if (final_norm) {
    norm(id(-1, Role::FinalNorm), x, h1, W.final_w, W.final_b);
    if (req.logits) {
      const int64_t V = s.vocab;
      Tensor lg = capture_tensor({B, T, V}, st);
      float* lp = lg.data<float>();
      lin(h1, W.lm_head, lp);
      if (s.final_softcap > 0.f) {
        SPX_LAUNCH(launch_n(BT * V), 256, 0, st, softcap_kernel)(lp, BT * V, s.final_softcap);
        CUDA_CHECK_LAUNCH();
      }
      res.logits = std::move(lg);
    }
  }
  ses.sync();  // results complete (and asynchronous errors reported) before they reach JS
  return res;
}

}  // namespace cuda
}  // namespace sparsify
