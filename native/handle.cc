#include "handle.h"
#include "errors.h"

#include <atomic>

namespace tl {
namespace {

constexpr uint64_t kMagic = 0x746f7263686c6f72ULL;  // tags our boxes among Externals

struct TensorBox {
  uint64_t magic = kMagic;
  at::Tensor tensor;
  int64_t reportedBytes = 0;
  /** Bytes this box added to the live-tensor count; -1 once it no longer counts (disposed/freed). */
  int64_t countedBytes = -1;
};

// A view (narrow, transpose, reshape without copy, ...) shares its base's storage: counting
// its bytes too made V8 see several times the memory a step really holds.
int64_t OwnBytes(const at::Tensor& t) {
  if (!t.defined() || t.is_view()) return 0;
  return static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
}

// Live handles, process-wide: the addon loads in several worker_threads, each with its own
// env, and a user asking "does my loop leak?" wants the whole process. Atomics, because
// finalizers of different envs run on different threads.
std::atomic<int64_t> gLiveTensors{0};
std::atomic<int64_t> gLiveBytes{0};

void CountLive(TensorBox* box) {
  // Its elements' bytes (a view counts its own elements), whether or not V8 has been told of
  // them: reports to V8 leave views and scoped tensors out, the live count does not.
  const at::Tensor& t = box->tensor;
  box->countedBytes = static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
  gLiveTensors.fetch_add(1, std::memory_order_relaxed);
  gLiveBytes.fetch_add(box->countedBytes, std::memory_order_relaxed);
}

/** Takes the box out of the count once, whichever of dispose() and the finalizer comes first. */
void UncountLive(TensorBox* box) {
  if (box->countedBytes < 0) return;
  gLiveTensors.fetch_sub(1, std::memory_order_relaxed);
  gLiveBytes.fetch_sub(box->countedBytes, std::memory_order_relaxed);
  box->countedBytes = -1;
}

// While a scope (tidy) runs, new handles are not reported to V8: the scope disposes them when
// it ends, and reporting a step's activations only to take them back made V8 start a
// mark-compact whenever a step's peak crossed its external-memory limit. One flag per JS
// thread: each worker_thread has its own scopes.
thread_local bool externalReportsPaused = false;

// A basic (pure) finalizer: with NAPI_EXPERIMENTAL, Node runs it during garbage collection
// itself instead of on a later event-loop turn. A synchronous training loop never yields to
// the loop, so deferred finalizers would keep every dropped tensor's memory until it ends.
void Finalize(Napi::BasicEnv env, TensorBox* box) {
  if (box->reportedBytes) Napi::MemoryManagement::AdjustExternalMemory(env, -box->reportedBytes);
  UncountLive(box);
  box->magic = 0;
  delete box;
}

TensorBox* BoxArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsExternal()) {
    ThrowTypeError(info.Env(), std::string(name) + ": expected a Tensor, got " + Describe(v));
  }
  auto* box = v.As<Napi::External<TensorBox>>().Data();
  if (box == nullptr || box->magic != kMagic) {
    ThrowTypeError(info.Env(), std::string(name) + ": expected a Tensor, got a foreign handle");
  }
  return box;
}

}  // namespace

Napi::Value WrapTensor(Napi::Env env, at::Tensor t) {
  auto* box = new TensorBox();
  // GPU bytes count too: a dropped CUDA tensor is freed only by a collection, which V8 starts
  // sooner when it knows how much native memory its objects hold.
  box->reportedBytes = externalReportsPaused ? 0 : OwnBytes(t);
  box->tensor = std::move(t);
  if (box->tensor.defined()) CountLive(box);
  if (box->reportedBytes) Napi::MemoryManagement::AdjustExternalMemory(env, box->reportedBytes);
  return Napi::External<TensorBox>::New(env, box, Finalize);
}

at::Tensor& TensorArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  TensorBox* box = BoxArg(info, i, name);
  if (!box->tensor.defined()) {
    ThrowError(info.Env(), std::string(name) + ": the Tensor was disposed and can no longer be used");
  }
  return box->tensor;
}

at::Tensor OptionalTensorArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info[i].IsNull() || info[i].IsUndefined()) return at::Tensor();
  return TensorArg(info, i, name);
}

std::vector<at::Tensor> TensorListArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return TensorListValue(info.Env(), info[i], name);
}

at::Tensor& TensorValue(Napi::Env env, const Napi::Value& v, const std::string& name) {
  if (!v.IsExternal()) ThrowTypeError(env, name + ": expected a Tensor, got " + Describe(v));
  auto* box = v.As<Napi::External<TensorBox>>().Data();
  if (box == nullptr || box->magic != kMagic) ThrowTypeError(env, name + ": expected a Tensor, got a foreign handle");
  if (!box->tensor.defined()) ThrowError(env, name + ": the Tensor was disposed and can no longer be used");
  return box->tensor;
}

std::vector<at::Tensor> TensorListValue(Napi::Env env, const Napi::Value& value, const std::string& name) {
  if (!value.IsArray()) ThrowTypeError(env, name + ": expected an array of Tensors, got " + Describe(value));
  Napi::Array a = value.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) out.push_back(TensorValue(env, a.Get(k), name + "[" + std::to_string(k) + "]"));
  return out;
}

void DisposeHandle(const Napi::CallbackInfo& info, size_t i) {
  TensorBox* box = BoxArg(info, i, "tensor");
  if (box->reportedBytes) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -box->reportedBytes);
  box->reportedBytes = 0;
  UncountLive(box);
  box->tensor = at::Tensor();
}

LiveTensorStats LiveTensors() { return {gLiveTensors.load(std::memory_order_relaxed), gLiveBytes.load(std::memory_order_relaxed)}; }

bool PauseExternalReports(bool paused) {
  const bool previous = externalReportsPaused;
  externalReportsPaused = paused;
  return previous;
}

void ReportHandle(const Napi::CallbackInfo& info, size_t i) {
  TensorBox* box = BoxArg(info, i, "tensor");
  if (box->reportedBytes != 0 || !box->tensor.defined()) return;
  box->reportedBytes = OwnBytes(box->tensor);
  if (box->reportedBytes) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), box->reportedBytes);
}

// The names lib/dtype.ts defines (it owns their meaning and the wording of a wrong one); here a
// name is only mapped to libtorch's type, and one that cannot be mapped is refused plainly.
static const std::pair<const char*, at::ScalarType> kDtypes[] = {
    {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16},
    {"int64", at::kLong},    {"int32", at::kInt},      {"uint8", at::kByte},   {"bool", at::kBool},
};

at::ScalarType ParseDtype(Napi::Env env, const std::string& name, const char* argName) {
  for (const auto& [n, t] : kDtypes) {
    if (name == n) return t;
  }
  ThrowTypeError(env, std::string(argName) + ": unknown dtype \"" + name + "\"");
}

const char* DtypeName(at::ScalarType type) {
  for (const auto& [n, t] : kDtypes) {
    if (type == t) return n;
  }
  return c10::toString(type);
}

// Whether the device exists is worded for users by lib/dtype.ts; here an index past the visible
// devices is refused plainly rather than handed to libtorch's per-device tables.
at::Device ParseDevice(Napi::Env env, const std::string& name, const char* argName) {
  if (name == "cpu") return at::Device(at::kCPU);
  int index = 0;
  if (name != "cuda") {
    const std::string idx = name.rfind("cuda:", 0) == 0 ? name.substr(5) : std::string();
    // Digits only, no leading zero, at most 3: c10 keeps the index in 8 bits, so "cuda:200"
    // would wrap to a negative index if handed to at::Device as text.
    const bool wellFormed = !idx.empty() && idx.size() < 4 && (idx.size() == 1 || idx[0] != '0') &&
                            std::all_of(idx.begin(), idx.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!wellFormed) ThrowTypeError(env, std::string(argName) + ": unknown device \"" + name + "\"");
    index = std::stoi(idx);
  }
  const int count = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  if (index >= count) ThrowRangeError(env, std::string(argName) + ": no device \"" + name + "\" on this machine");
  return name == "cuda" ? at::Device(at::kCUDA) : at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

std::string DeviceName(const at::Device& device) {
  if (device.is_cpu()) return "cpu";
  return device.str();
}

}  // namespace tl
