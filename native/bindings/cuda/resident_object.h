// ResidentObject<Traits>: the ObjectWrap class of a device object whose state stays on the GPU between calls
// (CudaEncoder, CudaDecoder, CudaModel). A create function builds the state in an async job and resolves to
// ResidentObject<Traits>::New(env, holder); each method is a plain binding function that takes its state with
// Of(info). dispose() drops the object's reference now (jobs in flight hold their own); a method called after
// dispose is a DisposedError, one called on another object a ValueError.
//
// Traits: using Value = <the state type>; static constexpr const char* kClass (the JS class name),
// kFactory (the create function, for messages), kWhat (the object, for messages); static constexpr
// napi_type_tag kTag (marks the class's instances).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/napi_util.h"

namespace sparsify {
namespace cuda_binding {

template <class Traits>
class ResidentObject : public Napi::ObjectWrap<ResidentObject<Traits>> {
 public:
  using Holder = std::shared_ptr<typename Traits::Value>;
  using Method = Napi::Value (*)(const Napi::CallbackInfo&);
  using Property = typename Napi::ObjectWrap<ResidentObject>::PropertyDescriptor;

  explicit ResidentObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ResidentObject>(info) {
    translate(info.Env(), [&] {
      if (!info[0].IsExternal()) fail(ErrorKind::Value, std::string(Traits::kClass) + " objects come from " + Traits::kFactory);
      held = *info[0].template As<Napi::External<Holder>>().Data();
      if (napi_type_tag_object(info.Env(), info.This(), &Traits::kTag) != napi_ok)
        fail(ErrorKind::Internal, std::string("could not tag the ") + Traits::kClass + " object");
      return 0;
    });
  }

  // Defines the class with `methods` (see Call) and dispose(), and keeps its constructor for New.
  static void Register(Napi::Env env, std::vector<Property> methods) {
    methods.push_back(ResidentObject::template InstanceMethod<&ResidentObject::Dispose>("dispose"));
    keep_class(env, Traits::kClass, ResidentObject::DefineClass(env, Traits::kClass, methods));
  }

  // A new instance holding `h` (on the JS thread, e.g. in the create job's done).
  static Napi::Object New(Napi::Env env, Holder h) {
    return kept_class(env, Traits::kClass).New({Napi::External<Holder>::New(env, &h)});
  }

  // The state of the method's object (this).
  static Holder& Of(const Napi::CallbackInfo& info) {
    bool tagged = false;
    if (info.This().IsObject()) napi_check_object_type_tag(info.Env(), info.This(), &Traits::kTag, &tagged);
    if (!tagged) fail(ErrorKind::Value, std::string("a ") + Traits::kClass + " method called on another object");
    ResidentObject* w = ResidentObject::Unwrap(info.This().template As<Napi::Object>());
    if (!w->held) fail(ErrorKind::Disposed, std::string(Traits::kWhat) + " was disposed");
    return w->held;
  }

  // A method: F runs guarded (typed errors) and accepts tensors on any device.
  template <Method F>
  Napi::Value Call(const Napi::CallbackInfo& info) {
    AnyDeviceTensors any_device;
    return guarded(info, F);
  }

  Holder held;  // reset by dispose(); jobs hold their own reference

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    held.reset();
    return info.Env().Undefined();
  }
};

}  // namespace cuda_binding
}  // namespace sparsify
