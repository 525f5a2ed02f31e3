// The native transformer: one decoder-only language model (GPT-2, GPT-NeoX, Llama, Qwen2, Gemma,
// Gemma2) built from weight Tensors that stay in their file dtype (usually views of a mapped
// safetensors file), and its forward pass with hook capture and splicing.
//
// Module names follow transformers' named_modules() relative to the base model, which is how
// sparsify names hookpoints (`h.0.mlp`, `layers.3.self_attn`, `embed_tokens`, ...).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace sparsify {
namespace model {

enum class Family { GPT2, NeoX, Llama, Gemma, Gemma2 };  // Qwen2 runs as Llama (with q/k/v bias)
enum class Norm { LayerNorm, RMS, RMSOnePlus };           // RMSOnePlus: Gemma's x * (1 + w)
enum class Act { GeluTanh, GeluErf, GeluFast, QuickGelu, Silu, Relu };

struct Spec {
  Family family = Family::Llama;
  int64_t hidden = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, inter = 0, vocab = 0, max_pos = 0;
  Norm norm = Norm::RMS;
  double eps = 1e-5;
  Act act = Act::Silu;
  int64_t rotary_dim = 0;           // 0: no rotary (GPT-2)
  std::vector<float> inv_freq;      // rotary_dim/2 entries, computed on the JS side (rope types)
  float rope_attention_scaling = 1.f;
  bool parallel_residual = false;   // GPT-NeoX use_parallel_residual
  float attn_scale = 1.f;           // multiplies q·k (per layer for GPT-2 scale_attn_by_inverse_layer_idx)
  bool scale_by_inverse_layer = false;
  float attn_softcap = 0.f;         // 0: none
  float final_softcap = 0.f;
  float embed_scale = 0.f;          // 0: none (Gemma: sqrt(hidden), rounded to the weight dtype)
  std::vector<int64_t> sliding_window;  // per layer; 0: full causal attention
};

// Roles of the weights, filled by the JS loader from the checkpoint's names.
struct LayerWeights {
  Tensor qkv_w, qkv_b;              // fused (GPT-2 c_attn [H,3H] Conv1D; NeoX query_key_value [3H,H])
  Tensor q_w, q_b, k_w, k_b, v_w, v_b;
  Tensor o_w, o_b;
  Tensor fc_w, fc_b;                // GPT-2 c_fc / NeoX dense_h_to_4h
  Tensor gate_w, gate_b, up_w, up_b;
  Tensor down_w, down_b;            // GPT-2 mlp.c_proj / NeoX dense_4h_to_h / down_proj
  // 1-D parameters widened to f32 once (small).
  std::vector<float> ln1_w, ln1_b, ln2_w, ln2_b, pre_ff_w, post_ff_w;
  std::vector<float> qkv_bf, q_bf, k_bf, v_bf, o_bf, fc_bf, gate_bf, up_bf, down_bf;
};

struct Weights {
  Tensor embed;        // [V, H]
  Tensor pos_embed;    // GPT-2 wpe [P, H]
  Tensor lm_head;      // [V, H] (may be the embedding when tied); undefined: no logits
  std::vector<float> final_w, final_b;
  std::vector<LayerWeights> layers;
};

// What a module is, for the forward's bookkeeping.
enum class Role {
  Embed, PosEmbed, EmbedDropout, Block, Norm1, Norm2, PreFF, PostFF, Attn, QKV, Q, K, V, O, AttnResidDropout,
  Mlp, Fc, Gate, Up, ActFn, Down, MlpDropout, PostAttnDropout, PostMlpDropout, FinalNorm
};

struct Module {
  std::string name;
  int64_t width = 0;     // output features
  int64_t in_width = 0;  // input features; 0: the input is token/position ids (no float input)
  int layer = -1;
  Role role = Role::Block;
};

struct Model {
  Spec spec;
  Weights w;
  std::vector<Module> modules;                 // in transformers' named_modules() order
  std::unordered_map<std::string, int> by_name;
  // (layer, role) -> module id; layer -1 for model-level modules.
  int id(int layer, Role role) const;
  std::vector<int> ids_;  // (layer+1) * kRoles + role
};

// Validates the spec against the weights and builds the module list.
std::shared_ptr<Model> build_model(Spec spec, Weights w);

struct ForwardRequest {
  Tensor tokens;                 // I32 [B, T]
  std::vector<char> want_out;    // per module id
  std::vector<char> want_in;     // per module id
  std::vector<Tensor> splice;    // per module id; undefined: none. F32 [B*T, width]
  bool logits = false;
  // Resume at decoder block `resume_layer` from `resume_hidden` (F32 [B*T, hidden]: the residual
  // stream entering that block, as captured from its input): the embeddings and the blocks below
  // are not run, so spliced variants of one batch share the prefix. -1: run from the embeddings.
  int resume_layer = -1;
  Tensor resume_hidden;
};

struct ForwardResult {
  std::vector<Tensor> out, in;   // per module id, F32 [B*T, width]
  Tensor logits;                 // F32 [B, T, V]
  int layers_run = 0;            // decoder blocks computed (the forward stops after the deepest needed)
};

// Validates the request (token range, length, splice shapes) and runs the forward.
void validate_request(const Model& m, const ForwardRequest& req);
ForwardResult forward(const Model& m, const ForwardRequest& req);
// The deepest decoder block the request needs (-1: none), and whether the final norm is needed
// (shared with the GPU forward, native/cuda/model_forward.cu).
int needed_layers(const Model& m, const ForwardRequest& req, bool* final_norm);

}  // namespace model
}  // namespace sparsify
