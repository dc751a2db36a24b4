// JS entry points of the LoRA kernels: each reads one named options object and checks only what
// memory safety needs (JS types, handles, the counts and id ranges the kernels index by); the math
// is in lora_kernels.cc, and the facade words the errors (docs/native-boundary.md).
#include "lora.h"
#include "handle.h"
#include "errors.h"
#include "lookup.h"
#include "options.h"
#include "workers.h"

namespace tl {
namespace {

// The adapters of one layer: `factors` holds an (A, B) pair per adapter, `scales` (and, for the
// Linear forward, `dropouts`) one number per adapter. Only the JS types and the counts are checked
// here (the counts are the index ranges the kernels read by); whether the factors fit the layer
// is for libtorch to refuse and for the facade to explain (lib/lora/kernel-checks.ts).
std::vector<LoraFactors> AdaptersField(const Napi::Object& o, bool withDropouts) {
  Napi::Env env = o.Env();
  Napi::Value v = o.Get("factors");
  if (!v.IsArray()) ThrowTypeError(env, "factors: expected an array of tensors, got " + Describe(v));
  Napi::Array factors = v.As<Napi::Array>();
  std::vector<double> scales = NumberListOption(o, "scales");
  std::vector<double> dropouts = withDropouts ? NumberListOption(o, "dropouts") : std::vector<double>(scales.size(), 0.0);
  if (factors.Length() != 2 * scales.size() || dropouts.size() != scales.size()) {
    ThrowRangeError(env, "factors: expected an (A, B) pair per scale" + std::string(withDropouts ? " and dropout" : "") + " (" +
                             std::to_string(2 * scales.size()) + " tensors), got " + std::to_string(factors.Length()) + " tensors, " +
                             std::to_string(scales.size()) + " scales" +
                             (withDropouts ? " and " + std::to_string(dropouts.size()) + " dropouts" : std::string()));
  }
  std::vector<LoraFactors> out(scales.size());
  for (uint32_t k = 0; k < out.size(); ++k) {
    out[k].A = TensorValue(env, factors.Get(2 * k), "factors[" + std::to_string(2 * k) + "]");
    out[k].B = TensorValue(env, factors.Get(2 * k + 1), "factors[" + std::to_string(2 * k + 1) + "]");
    out[k].scale = scales[k];
    out[k].dropout = dropouts[k];
  }
  return out;
}

// loraLinear({ input, weight, bias | null, fanInFanOut, training, factors, scales, dropouts })
Napi::Value LoraLinear(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0, "options");
  at::Tensor& x = TensorOption(o, "input");
  at::Tensor& w = TensorOption(o, "weight");
  at::Tensor b = OptionalTensorOption(o, "bias");
  const bool fiof = BoolOption(o, "fanInFanOut"), training = BoolOption(o, "training");
  std::vector<LoraFactors> adapters = AdaptersField(o, true);
  return WrapTensor(info.Env(), LoraLinearForward(x, w, b, fiof, training, adapters));
}

// loraEmbedding({ ids, weight, paddingIdx, factors, scales })
Napi::Value LoraEmbedding(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0, "options");
  at::Tensor& ids = TensorOption(o, "ids");
  at::Tensor& w = TensorOption(o, "weight");
  const int64_t padding = IntOption(o, "paddingIdx");
  std::vector<LoraFactors> adapters = AdaptersField(o, false);
  // The lookups index the weight's rows and every A's columns by the ids: the ids must be in
  // range of each (an out-of-range id is a device assert on CUDA).
  CheckTokenIds(info.Env(), ids, w.size(0));
  for (const LoraFactors& f : adapters) {
    if (f.A.dim() == 2 && f.A.size(1) < w.size(0)) CheckTokenIds(info.Env(), ids, f.A.size(1));
  }
  return WrapTensor(info.Env(), LoraEmbeddingForward(ids, w, padding, adapters));
}

Napi::Value BackupToJs(Napi::Env env, at::Tensor backup) { return backup.defined() ? WrapTensor(env, std::move(backup)) : env.Null(); }

// The arguments of a merge: { weight, factors, scales, embedding, fanInFanOut, safe, keepBackup }.
struct MergeArgs {
  at::Tensor weight;
  std::vector<LoraFactors> adapters;
  LoraKind kind = LoraKind::Linear;
  bool fanInFanOut = false, safe = false, keepBackup = false;
};

MergeArgs MergeArgsOf(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0, "options");
  MergeArgs m;
  m.weight = TensorOption(o, "weight");
  m.adapters = AdaptersField(o, false);
  m.kind = BoolOption(o, "embedding") ? LoraKind::Embedding : LoraKind::Linear;
  m.fanInFanOut = BoolOption(o, "fanInFanOut");
  m.safe = BoolOption(o, "safe");
  m.keepBackup = BoolOption(o, "keepBackup");
  return m;
}

// loraMerge({ weight, factors, scales, embedding, fanInFanOut, safe, keepBackup }) -> backup | null
Napi::Value LoraMerge(const Napi::CallbackInfo& info) {
  MergeArgs m = MergeArgsOf(info);
  return BackupToJs(info.Env(), MergeInto(m.weight, m.adapters, m.kind, m.fanInFanOut, m.safe, m.keepBackup));
}

// loraMergeAsync(...same) -> Promise<backup | null>
Napi::Value LoraMergeAsync(const Napi::CallbackInfo& info) {
  MergeArgs m = MergeArgsOf(info);
  at::Tensor w = m.weight;
  std::vector<LoraFactors> adapters = std::move(m.adapters);
  const LoraKind kind = m.kind;
  const bool fiof = m.fanInFanOut, safe = m.safe, keep = m.keepBackup;
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
