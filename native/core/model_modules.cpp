// The module list of each architecture (names and widths as transformers' named_modules() of the
// base model) and the validation of weights against the spec.
#include <cmath>

#include "core/model.h"

namespace sparsify {
namespace model {

static constexpr int kRoles = int(Role::FinalNorm) + 1;

int Model::id(int layer, Role role) const {
  size_t i = size_t(layer + 1) * kRoles + size_t(role);
  return i < ids_.size() ? ids_[i] : -1;
}

namespace {

struct Builder {
  Model& m;
  void add(const std::string& name, int64_t width, int64_t in_width, int layer, Role role) {
    int id = int(m.modules.size());
    m.modules.push_back({name, width, in_width, layer, role});
    m.by_name[name] = id;
    m.ids_[size_t(layer + 1) * kRoles + size_t(role)] = id;
  }
};

void expect_matrix(const Tensor& t, int64_t rows, int64_t cols, const std::string& what) {
  if (!t.defined()) fail(ErrorKind::File, "missing weight " + what);
  expect_float(t, what.c_str());
  if (t.ndim() != 2 || t.dim(0) != rows || t.dim(1) != cols)
    fail(ErrorKind::Shape, "weight " + what + " has shape " + shape_str(t.shape) + ", expected [" +
                               std::to_string(rows) + ", " + std::to_string(cols) + "]");
}

void expect_vec(const std::vector<float>& v, int64_t n, const std::string& what, bool required = true) {
  if (v.empty() && !required) return;
  if (int64_t(v.size()) != n)
    fail(v.empty() ? ErrorKind::File : ErrorKind::Shape,
         v.empty() ? "missing weight " + what
                   : "weight " + what + " has " + std::to_string(v.size()) + " elements, expected " + std::to_string(n));
}

}  // namespace

std::shared_ptr<Model> build_model(Spec s, Weights w) {
  SPX_CHECK(s.hidden > 0 && s.layers > 0 && s.heads > 0 && s.vocab > 0 && s.max_pos > 0 && s.inter > 0, Value,
            "model config: hidden, layers, heads, intermediate size, vocab and max positions must be positive");
  if (s.kv_heads <= 0) s.kv_heads = s.heads;
  if (s.head_dim <= 0) s.head_dim = s.hidden / s.heads;
  SPX_CHECK(s.heads % s.kv_heads == 0, Value,
            "model config: num_attention_heads " + std::to_string(s.heads) + " is not a multiple of num_key_value_heads " +
                std::to_string(s.kv_heads));
  SPX_CHECK(s.rotary_dim % 2 == 0 && s.rotary_dim <= s.head_dim && int64_t(s.inv_freq.size()) == s.rotary_dim / 2, Value,
            "model config: rotary dimension " + std::to_string(s.rotary_dim) + " does not fit head_dim " +
                std::to_string(s.head_dim));
  if (s.sliding_window.empty()) s.sliding_window.assign(size_t(s.layers), 0);
  SPX_CHECK(int64_t(s.sliding_window.size()) == s.layers, Value, "model config: sliding window list has the wrong length");
  SPX_CHECK(int64_t(w.layers.size()) == s.layers, File,
            "checkpoint has " + std::to_string(w.layers.size()) + " layers, config says " + std::to_string(s.layers));

  const int64_t H = s.hidden, I = s.inter, QW = s.heads * s.head_dim, KW = s.kv_heads * s.head_dim;
  const bool fused = s.family == Family::GPT2 || s.family == Family::NeoX;
  if (fused) SPX_CHECK(QW == H, Value, "GPT-2/GPT-NeoX need hidden_size == heads * head_dim");
  expect_matrix(w.embed, s.vocab, H, "embedding");
  if (s.family == Family::GPT2) expect_matrix(w.pos_embed, w.pos_embed.defined() ? w.pos_embed.dim(0) : 0, H, "wpe");
  if (s.family == Family::GPT2)
    SPX_CHECK(w.pos_embed.dim(0) >= s.max_pos, Shape, "wpe has fewer rows than n_positions");
  if (w.lm_head.defined()) expect_matrix(w.lm_head, s.vocab, H, "lm_head");
  const bool ln = s.norm == Norm::LayerNorm;
  expect_vec(w.final_w, H, "final norm weight");
  if (ln) expect_vec(w.final_b, H, "final norm bias");
  for (int64_t l = 0; l < s.layers; ++l) {
    const LayerWeights& L = w.layers[size_t(l)];
    std::string p = "layer " + std::to_string(l) + " ";
    expect_vec(L.ln1_w, H, p + "input norm weight");
    expect_vec(L.ln2_w, H, p + "post-attention norm weight");
    if (ln) {
      expect_vec(L.ln1_b, H, p + "input norm bias");
      expect_vec(L.ln2_b, H, p + "post-attention norm bias");
    }
    if (s.family == Family::Gemma2) {
      expect_vec(L.pre_ff_w, H, p + "pre_feedforward_layernorm weight");
      expect_vec(L.post_ff_w, H, p + "post_feedforward_layernorm weight");
    }
    if (s.family == Family::GPT2) {
      expect_matrix(L.qkv_w, H, 3 * H, p + "attn.c_attn.weight");
      expect_matrix(L.o_w, H, H, p + "attn.c_proj.weight");
      expect_matrix(L.fc_w, H, I, p + "mlp.c_fc.weight");
      expect_matrix(L.down_w, I, H, p + "mlp.c_proj.weight");
    } else if (s.family == Family::NeoX) {
      expect_matrix(L.qkv_w, 3 * H, H, p + "attention.query_key_value.weight");
      expect_matrix(L.o_w, H, H, p + "attention.dense.weight");
      expect_matrix(L.fc_w, I, H, p + "mlp.dense_h_to_4h.weight");
      expect_matrix(L.down_w, H, I, p + "mlp.dense_4h_to_h.weight");
    } else {
      expect_matrix(L.q_w, QW, H, p + "self_attn.q_proj.weight");
      expect_matrix(L.k_w, KW, H, p + "self_attn.k_proj.weight");
      expect_matrix(L.v_w, KW, H, p + "self_attn.v_proj.weight");
      expect_matrix(L.o_w, H, QW, p + "self_attn.o_proj.weight");
      expect_matrix(L.gate_w, I, H, p + "mlp.gate_proj.weight");
      expect_matrix(L.up_w, I, H, p + "mlp.up_proj.weight");
      expect_matrix(L.down_w, H, I, p + "mlp.down_proj.weight");
    }
    expect_vec(L.qkv_bf, fused ? 3 * H : 0, p + "qkv bias", false);
    expect_vec(L.q_bf, QW, p + "q_proj bias", false);
    expect_vec(L.k_bf, KW, p + "k_proj bias", false);
    expect_vec(L.v_bf, KW, p + "v_proj bias", false);
    expect_vec(L.o_bf, H, p + "output projection bias", false);
    expect_vec(L.fc_bf, I, p + "mlp input projection bias", false);
    expect_vec(L.gate_bf, I, p + "gate_proj bias", false);
    expect_vec(L.up_bf, I, p + "up_proj bias", false);
    expect_vec(L.down_bf, H, p + "mlp output projection bias", false);
  }

  auto m = std::make_shared<Model>();
  m->spec = std::move(s);
  m->w = std::move(w);
  m->ids_.assign(size_t(m->spec.layers + 1) * kRoles, -1);
  const Spec& sp = m->spec;
  Builder b{*m};
  auto L = [](const char* list, int64_t i) { return std::string(list) + "." + std::to_string(i); };
  switch (sp.family) {
    case Family::GPT2:
      b.add("wte", H, 0, -1, Role::Embed);
      b.add("wpe", H, 0, -1, Role::PosEmbed);
      b.add("drop", H, H, -1, Role::EmbedDropout);
      for (int i = 0; i < int(sp.layers); ++i) {
        std::string p = L("h", i);
        b.add(p, H, H, i, Role::Block);
        b.add(p + ".ln_1", H, H, i, Role::Norm1);
        b.add(p + ".attn", H, H, i, Role::Attn);
        b.add(p + ".attn.c_attn", 3 * H, H, i, Role::QKV);
        b.add(p + ".attn.c_proj", H, H, i, Role::O);
        b.add(p + ".attn.resid_dropout", H, H, i, Role::AttnResidDropout);
        b.add(p + ".ln_2", H, H, i, Role::Norm2);
        b.add(p + ".mlp", H, H, i, Role::Mlp);
        b.add(p + ".mlp.c_fc", I, H, i, Role::Fc);
        b.add(p + ".mlp.c_proj", H, I, i, Role::Down);
        b.add(p + ".mlp.act", I, I, i, Role::ActFn);
        b.add(p + ".mlp.dropout", H, H, i, Role::MlpDropout);
      }
      b.add("ln_f", H, H, -1, Role::FinalNorm);
      break;
    case Family::NeoX:
      b.add("embed_in", H, 0, -1, Role::Embed);
      b.add("emb_dropout", H, H, -1, Role::EmbedDropout);
      for (int i = 0; i < int(sp.layers); ++i) {
        std::string p = L("layers", i);
        b.add(p, H, H, i, Role::Block);
        b.add(p + ".input_layernorm", H, H, i, Role::Norm1);
        b.add(p + ".post_attention_layernorm", H, H, i, Role::Norm2);
        b.add(p + ".post_attention_dropout", H, H, i, Role::PostAttnDropout);
        b.add(p + ".post_mlp_dropout", H, H, i, Role::PostMlpDropout);
        b.add(p + ".attention", H, H, i, Role::Attn);
        b.add(p + ".attention.query_key_value", 3 * H, H, i, Role::QKV);
        b.add(p + ".attention.dense", H, H, i, Role::O);
        b.add(p + ".mlp", H, H, i, Role::Mlp);
        b.add(p + ".mlp.dense_h_to_4h", I, H, i, Role::Fc);
        b.add(p + ".mlp.dense_4h_to_h", H, I, i, Role::Down);
        b.add(p + ".mlp.act", I, I, i, Role::ActFn);
      }
      b.add("final_layer_norm", H, H, -1, Role::FinalNorm);
      break;
    case Family::Llama:
    case Family::Gemma:
    case Family::Gemma2:
      b.add("embed_tokens", H, 0, -1, Role::Embed);
      for (int i = 0; i < int(sp.layers); ++i) {
        std::string p = L("layers", i);
        b.add(p, H, H, i, Role::Block);
        b.add(p + ".self_attn", H, H, i, Role::Attn);
        b.add(p + ".self_attn.q_proj", QW, H, i, Role::Q);
        b.add(p + ".self_attn.k_proj", KW, H, i, Role::K);
        b.add(p + ".self_attn.v_proj", KW, H, i, Role::V);
        b.add(p + ".self_attn.o_proj", H, QW, i, Role::O);
        b.add(p + ".mlp", H, H, i, Role::Mlp);
        b.add(p + ".mlp.gate_proj", I, H, i, Role::Gate);
        b.add(p + ".mlp.up_proj", I, H, i, Role::Up);
        b.add(p + ".mlp.down_proj", H, I, i, Role::Down);
        b.add(p + ".mlp.act_fn", I, I, i, Role::ActFn);
        b.add(p + ".input_layernorm", H, H, i, Role::Norm1);
        b.add(p + ".post_attention_layernorm", H, H, i, Role::Norm2);
        if (sp.family == Family::Gemma2) {
          b.add(p + ".pre_feedforward_layernorm", H, H, i, Role::PreFF);
          b.add(p + ".post_feedforward_layernorm", H, H, i, Role::PostFF);
        }
      }
      b.add("norm", H, H, -1, Role::FinalNorm);
      break;
  }
  return m;
}

}  // namespace model
}  // namespace sparsify
