// What the NativeModel binding shares with other bindings (the CUDA build's resident model in
// native/bindings/cuda/model.cpp): the model behind a JS NativeModel, and the forward
// request / result conversions, so both forwards take and return the same shapes.
#pragma once
#include <memory>

#include "core/model.h"
#include "core/napi_util.h"

namespace sparsify {

// The model of a NativeModel object (throws ValueError for anything else, DisposedError when
// disposed). The shared_ptr keeps the weights alive for the caller.
std::shared_ptr<model::Model> native_model_of(Napi::Value v, const char* name);

// forward(tokens, {outputs, inputs, splice: [name, Tensor][], logits}) -> a request sized for `m`
// (hookpoint names resolved; not yet validated: call model::validate_request).
// any_device_splice: splice tensors may be device tensors (GPU forward).
model::ForwardRequest read_forward_request(const model::Model& m, Napi::Value tokens, Napi::Value opts,
                                           bool any_device_splice);

// {outputs: {name: Tensor}, inputs: {name: Tensor}, layersRun, logits?}
Napi::Value wrap_forward_result(Napi::Env env, const model::Model& m, const model::ForwardResult& res);

}  // namespace sparsify
