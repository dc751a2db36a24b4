// JS entry points of the LoRA kernels: argument unpacking and checks only; the math is in
// lora_kernels.cc.
#include "lora.h"
#include "handle.h"
#include "errors.h"
#include "lookup.h"
#include "workers.h"

namespace tl {
namespace {

// adapters: a flat array [A, B, scale, dropout, A, B, scale, dropout, ...]
std::vector<LoraFactors> AdaptersArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  Napi::Value v = info[i];
  if (!v.IsArray()) ThrowTypeError(env, "adapters: expected an array, got " + Describe(v));
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() % 4 != 0) ThrowTypeError(env, "adapters: expected groups of [A, B, scale, dropout]");
  std::vector<LoraFactors> out(a.Length() / 4);
  for (uint32_t k = 0; k < out.size(); ++k) {
    std::string label = "adapters[" + std::to_string(k) + "]";
    out[k].A = TensorValue(env, a.Get(4 * k), label + ".A");
    out[k].B = TensorValue(env, a.Get(4 * k + 1), label + ".B");
    Napi::Value scale = a.Get(4 * k + 2), dropout = a.Get(4 * k + 3);
    if (!scale.IsNumber() || !dropout.IsNumber()) ThrowTypeError(env, label + ": scale and dropout must be numbers");
    out[k].scale = scale.As<Napi::Number>().DoubleValue();
    out[k].dropout = dropout.As<Napi::Number>().DoubleValue();
  }
  return out;
}

// The input and every factor must share the base weight's dtype and device: ATen's own
// message ("expected scalar type Double but found Float") names no argument.
void CheckSameDevice(Napi::Env env, const at::Tensor& t, const at::Tensor& w, const std::string& name) {
  if (t.device() != w.device()) {
    ThrowTypeError(env, name + ": expected a tensor on " + DeviceName(w.device()) + " (where the layer's weight is), got one on " +
                            DeviceName(t.device()));
  }
}

void CheckSameKind(Napi::Env env, const at::Tensor& t, const at::Tensor& w, const std::string& name) {
  if (t.scalar_type() != w.scalar_type()) {
    ThrowTypeError(
        env, name + ": expected dtype " + DtypeName(w.scalar_type()) + " (the layer's weight dtype), got " + DtypeName(t.scalar_type()));
  }
  CheckSameDevice(env, t, w, name);
}

// Factors share the weight's dtype, or are float32 on a float16/bfloat16 weight (adapters kept in
// full precision on a half-precision base, as PEFT's autocast_adapter_dtype does); A and B agree.
void CheckFactorKinds(Napi::Env env, const at::Tensor& w, const std::vector<LoraFactors>& adapters) {
  const bool halfBase = w.scalar_type() == at::kHalf || w.scalar_type() == at::kBFloat16;
  for (size_t k = 0; k < adapters.size(); ++k) {
    const std::string label = "adapters[" + std::to_string(k) + "]";
    const at::Tensor &A = adapters[k].A, &B = adapters[k].B;
    if (halfBase && A.scalar_type() == at::kFloat && B.scalar_type() == at::kFloat) {
      CheckSameDevice(env, A, w, label + ".A");
      CheckSameDevice(env, B, w, label + ".B");
      continue;
    }
    CheckSameKind(env, A, w, label + ".A");
    CheckSameKind(env, B, w, label + ".B");
  }
}

void CheckLinearShapes(Napi::Env env, const at::Tensor& x, const at::Tensor& w, bool fiof, const std::vector<LoraFactors>& adapters) {
  CheckSameKind(env, x, w, "input");
  CheckFactorKinds(env, w, adapters);
  const int64_t in = fiof ? w.size(0) : w.size(1), out = fiof ? w.size(1) : w.size(0);
  if (x.dim() < 1 || x.size(-1) != in) {
    ThrowRangeError(env, "input: expected last dimension " + std::to_string(in) + " (in_features), got shape " + c10::str(x.sizes()));
  }
  for (size_t k = 0; k < adapters.size(); ++k) {
    const auto& f = adapters[k];
    if (f.A.dim() != 2 || f.B.dim() != 2 || f.A.size(1) != in || f.B.size(0) != out || f.A.size(0) != f.B.size(1)) {
      ThrowRangeError(env, "adapters[" + std::to_string(k) + "]: lora_A " + c10::str(f.A.sizes()) + " and lora_B " + c10::str(f.B.sizes()) +
                               " do not fit a Linear(" + std::to_string(in) + ", " + std::to_string(out) + ")");
    }
  }
}

// loraLinear(x, weight, bias | null, fanInFanOut, training, adapters)
Napi::Value LoraLinear(const Napi::CallbackInfo& info) {
  at::Tensor& x = TensorArg(info, 0, "input");
  at::Tensor& w = TensorArg(info, 1, "weight");
  at::Tensor b = OptionalTensorArg(info, 2, "bias");
  bool fiof = BoolArg(info, 3, "fanInFanOut");
  bool training = BoolArg(info, 4, "training");
  std::vector<LoraFactors> adapters = AdaptersArg(info, 5);
  CheckLinearShapes(info.Env(), x, w, fiof, adapters);
  return WrapTensor(info.Env(), LoraLinearForward(x, w, b, fiof, training, adapters));
}

// loraEmbedding(ids, weight, paddingIdx, adapters)
Napi::Value LoraEmbedding(const Napi::CallbackInfo& info) {
  at::Tensor& ids = TensorArg(info, 0, "ids");
  at::Tensor& w = TensorArg(info, 1, "weight");
  int64_t padding = IntArg(info, 2, "paddingIdx");
  std::vector<LoraFactors> adapters = AdaptersArg(info, 3);
  CheckTokenIds(info.Env(), ids, w.size(0));
  if (ids.device() != w.device()) {
    ThrowTypeError(info.Env(), "ids: expected a tensor on " + DeviceName(w.device()) + " (where the layer's weight is), got one on " +
                                   DeviceName(ids.device()));
  }
  CheckFactorKinds(info.Env(), w, adapters);
  for (size_t k = 0; k < adapters.size(); ++k) {
    const auto& f = adapters[k];
    if (f.A.dim() != 2 || f.B.dim() != 2 || f.A.size(1) != w.size(0) || f.B.size(0) != w.size(1) || f.A.size(0) != f.B.size(1)) {
      ThrowRangeError(info.Env(), "adapters[" + std::to_string(k) + "]: lora_embedding_A " + c10::str(f.A.sizes()) +
                                      " and lora_embedding_B " + c10::str(f.B.sizes()) + " do not fit an Embedding(" +
                                      std::to_string(w.size(0)) + ", " + std::to_string(w.size(1)) + ")");
    }
  }
  return WrapTensor(info.Env(), LoraEmbeddingForward(ids, w, padding, adapters));
}

LoraKind KindArg(const Napi::CallbackInfo& info, size_t i) {
  std::string kind = StringArg(info, i, "kind");
  if (kind == "linear") return LoraKind::Linear;
  if (kind == "embedding") return LoraKind::Embedding;
  ThrowTypeError(info.Env(), "kind: expected \"linear\" or \"embedding\", got \"" + kind + "\"");
}

Napi::Value BackupToJs(Napi::Env env, at::Tensor backup) { return backup.defined() ? WrapTensor(env, std::move(backup)) : env.Null(); }

// loraMerge(weight, adapters, kind, fanInFanOut, safe, keepBackup) -> backup | null
Napi::Value LoraMerge(const Napi::CallbackInfo& info) {
  at::Tensor& w = TensorArg(info, 0, "weight");
  std::vector<LoraFactors> adapters = AdaptersArg(info, 1);
  LoraKind kind = KindArg(info, 2);
  at::Tensor backup =
      MergeInto(w, adapters, kind, BoolArg(info, 3, "fanInFanOut"), BoolArg(info, 4, "safe"), BoolArg(info, 5, "keepBackup"));
  return BackupToJs(info.Env(), std::move(backup));
}

// loraMergeAsync(...same) -> Promise<backup | null>
Napi::Value LoraMergeAsync(const Napi::CallbackInfo& info) {
  at::Tensor w = TensorArg(info, 0, "weight");
  std::vector<LoraFactors> adapters = AdaptersArg(info, 1);
  LoraKind kind = KindArg(info, 2);
  bool fiof = BoolArg(info, 3, "fanInFanOut"), safe = BoolArg(info, 4, "safe"), keep = BoolArg(info, 5, "keepBackup");
  {
    // The worker merges snapshots of the factors (they are small): an optimizer step taken on
    // the main thread while it runs must not leak half-applied into the merged weight.
    at::NoGradGuard noGrad;
    for (LoraFactors& f : adapters) {
      f.A = f.A.clone();
      f.B = f.B.clone();
    }
  }
  // The worker always computes the merged weight aside (keepBackup = true never writes `w`):
  // the live weight is read on the main thread (forward, stateDict, saves) while it runs, and
  // must never be seen half-merged. The weight takes the merged buffer in the completion, on
  // the main thread; a later merge (a backup already kept) just drops the previous buffer.
  return RunAsync(
      info.Env(), "torch-lora:merge", [=]() { return std::vector<at::Tensor>{ComputeMerge(w, adapters, kind, fiof, safe, true)}; },
      [w, keep](Napi::Env env, std::vector<at::Tensor>& r) {
        at::Tensor backup = SwapInMerged(w, r[0]);
        return BackupToJs(env, keep ? backup : at::Tensor());
      });
}

void CheckRestore(const Napi::CallbackInfo& info, const at::Tensor& w, const at::Tensor& backup) {
  if (!w.sizes().equals(backup.sizes()) || w.scalar_type() != backup.scalar_type()) {
    ThrowError(info.Env(),
               "restore: the saved base weight " + c10::str(backup.sizes()) + " does not match the weight " + c10::str(w.sizes()));
  }
}

// loraRestore(weight, backup): writes the saved pristine weight back, bit for bit.
Napi::Value LoraRestore(const Napi::CallbackInfo& info) {
  at::Tensor& w = TensorArg(info, 0, "weight");
  at::Tensor& backup = TensorArg(info, 1, "backup");
  CheckRestore(info, w, backup);
  RestoreFrom(w, backup);
  return info.Env().Undefined();
}

// loraRestoreAsync(weight, backup) -> Promise<undefined>: the swap back is O(1), so it happens
// when the promise settles, on the main thread, where the weight is read.
Napi::Value LoraRestoreAsync(const Napi::CallbackInfo& info) {
  at::Tensor w = TensorArg(info, 0, "weight");
  at::Tensor backup = TensorArg(info, 1, "backup");
  CheckRestore(info, w, backup);
  return RunAsync(
      info.Env(), "torch-lora:unmerge", []() { return std::vector<at::Tensor>{}; },
      [w, backup](Napi::Env env, std::vector<at::Tensor>&) {
        RestoreFrom(w, backup);
        return env.Undefined();
      });
}

}  // namespace

void RegisterLora(Napi::Object exports) {
  TL_EXPORT(exports, "loraLinear", LoraLinear);
  TL_EXPORT(exports, "loraEmbedding", LoraEmbedding);
  TL_EXPORT(exports, "loraMerge", LoraMerge);
  TL_EXPORT(exports, "loraMergeAsync", LoraMergeAsync);
  TL_EXPORT(exports, "loraRestore", LoraRestore);
  TL_EXPORT(exports, "loraRestoreAsync", LoraRestoreAsync);
}

}  // namespace tl
