// The transformer forward on the GPU: a device-resident copy of a built model::Model (the same
// Spec, Weights and module list as the CPU forward, so validation and hookpoint names are shared)
// and a forward that keeps every activation on the device and returns captured hookpoints as
// device tensors. Math and module order mirror native/cpu/model_forward.cpp line by line; the
// difference is the GEMMs: weights and activations are rounded to bf16 (f32 accumulation).
//
// Device layout of the weights (uploaded once by make_resident_model):
//   linear weights (q/k/v/o, fused qkv, MLP, lm_head): bf16 [out, pad32(in)] (the nn.Linear
//     layout; GPT-2's Conv1D [in, out] weights are transposed on upload);
//   linear biases, norm weights/biases: f32;
//   token/position embeddings: the checkpoint's dtype, bytes unchanged (the gather is exact and
//     widens to f32 as the CPU forward does). A tied lm_head is a second (bf16) copy.
#pragma once
#include <cstdint>
#include <memory>

#include "core/model.h"

namespace sparsify {
namespace cuda {

struct ResidentWeights;  // model_forward.cu

struct ResidentModel {
  std::shared_ptr<const model::Model> host;  // spec, modules, host weights (the CPU model)
  std::unique_ptr<ResidentWeights> dev;
  int64_t device_bytes = 0;  // bytes of resident weights
  ResidentModel();
  ResidentModel(const ResidentModel&) = delete;
  ResidentModel& operator=(const ResidentModel&) = delete;
  ~ResidentModel();
};

// Uploads and converts the weights (opens its own cuda::Session). Throws ValueError for models
// the GPU forward cannot run (head_dim above attention_max_head_dim()).
std::shared_ptr<ResidentModel> make_resident_model(std::shared_ptr<const model::Model> m);

// The forward of `req` (validated by model::validate_request; tokens are a host tensor, splice
// tensors host or device). Captured inputs/outputs and logits are device tensors, f32
// [B·T, width] and [B, T, V]. Holds a cuda::Session for the whole pass and syncs before returning.
model::ForwardResult resident_forward(const ResidentModel& rm, const model::ForwardRequest& req);

}  // namespace cuda
}  // namespace sparsify
