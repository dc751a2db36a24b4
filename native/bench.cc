// Benchmark floors: the LoRA kernels and merge arithmetic run N times in a C++ loop, with no
// JS in between. `npm run bench` divides torch-lora's per-call time from JS by these figures,
// so the ratio is exactly what crossing into JS and back costs on top of the math.
// Linked only into torch_lora_bench.node (CMakeLists.txt), never into the shipped addon: it adds
// its entry points through AddExtraRegistrar (native/addon.cc) from a static initializer.
#include "lora.h"
#include "handle.h"
#include "errors.h"

#include <chrono>

namespace tl {
namespace {

using Clock = std::chrono::steady_clock;

int64_t IterationsArg(const Napi::CallbackInfo& info, size_t i) {
  int64_t n = IntArg(info, i, "iterations");
  if (n < 1) ThrowRangeError(info.Env(), "iterations: expected a positive integer, got " + std::to_string(n));
  return n;
}

// "forward" or "forwardBackward"; the latter needs a gradient of the output's shape.
bool BackwardArg(const Napi::CallbackInfo& info, size_t i) {
  std::string mode = StringArg(info, i, "mode");
  if (mode == "forward") return false;
  if (mode == "forwardBackward") return true;
  ThrowTypeError(info.Env(), "mode: expected \"forward\" or \"forwardBackward\", got \"" + mode + "\"");
}

// The one adapter a floor loop times: A, B and scale at arguments i, i+1 and i+2.
std::vector<LoraFactors> OneAdapterArg(const Napi::CallbackInfo& info, size_t i) {
  std::vector<LoraFactors> adapters(1);
  adapters[0].A = TensorArg(info, i, "A");
  adapters[0].B = TensorArg(info, i + 1, "B");
  adapters[0].scale = NumberArg(info, i + 2, "scale");
  return adapters;
}

double Elapsed(Clock::time_point start) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
}

// Runs `forward` (and the backward of `gradOut` when asked) `n` times; returns the elapsed ns.
template <typename Forward>
Napi::Value TimeForward(Napi::Env env, int64_t n, bool backward, const at::Tensor& gradOut, Forward forward) {
  auto start = Clock::now();
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor y = forward();
    if (backward) y.backward(gradOut);
  }
  return Napi::Number::New(env, Elapsed(start));
}

// benchLoraLinear(x, weight, bias | null, A, B, scale, mode, gradOut | null, iterations) -> ns
Napi::Value BenchLoraLinear(const Napi::CallbackInfo& info) {
  at::Tensor x = TensorArg(info, 0, "input");
  at::Tensor w = TensorArg(info, 1, "weight");
  at::Tensor b = OptionalTensorArg(info, 2, "bias");
  std::vector<LoraFactors> adapters = OneAdapterArg(info, 3);
  const bool backward = BackwardArg(info, 6);
  at::Tensor g = OptionalTensorArg(info, 7, "gradOut");
  const int64_t n = IterationsArg(info, 8);
  return TimeForward(info.Env(), n, backward, g, [&] { return LoraLinearForward(x, w, b, false, true, adapters); });
}

// benchLoraEmbedding(ids, weight, A, B, scale, mode, gradOut | null, iterations) -> ns
Napi::Value BenchLoraEmbedding(const Napi::CallbackInfo& info) {
  at::Tensor ids = TensorArg(info, 0, "ids");
  at::Tensor w = TensorArg(info, 1, "weight");
  std::vector<LoraFactors> adapters = OneAdapterArg(info, 2);
  const bool backward = BackwardArg(info, 5);
  at::Tensor g = OptionalTensorArg(info, 6, "gradOut");
  const int64_t n = IterationsArg(info, 7);
  return TimeForward(info.Env(), n, backward, g, [&] { return LoraEmbeddingForward(ids, w, -1, adapters); });
}

// benchMergeFloor(weight, A, B, scale, iterations) -> ns: W += s·BA, then W -= s·BA, in place.
Napi::Value BenchMergeFloor(const Napi::CallbackInfo& info) {
  at::Tensor w = TensorArg(info, 0, "weight");
  at::Tensor A = TensorArg(info, 1, "A").to(w.scalar_type());
  at::Tensor B = TensorArg(info, 2, "B").to(w.scalar_type());
  const double s = NumberArg(info, 3, "scale");
  const int64_t n = IterationsArg(info, 4);
  at::NoGradGuard noGrad;
  auto start = Clock::now();
  for (int64_t i = 0; i < n; ++i) {
    w.addmm_(B, A, 1, s);
    w.addmm_(B, A, 1, -s);
  }
  return Napi::Number::New(info.Env(), Elapsed(start));
}

// benchSum(x, iterations) -> ns: the trivial op of the call-overhead case, without the call.
Napi::Value BenchSum(const Napi::CallbackInfo& info) {
  at::Tensor x = TensorArg(info, 0, "input");
  const int64_t n = IterationsArg(info, 1);
  auto start = Clock::now();
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor y = x.sum();
  }
  return Napi::Number::New(info.Env(), Elapsed(start));
}

}  // namespace

void RegisterBench(Napi::Object exports) {
  TL_EXPORT(exports, "benchLoraLinear", BenchLoraLinear);
  TL_EXPORT(exports, "benchLoraEmbedding", BenchLoraEmbedding);
  TL_EXPORT(exports, "benchMergeFloor", BenchMergeFloor);
  TL_EXPORT(exports, "benchSum", BenchSum);
}

bool AddExtraRegistrar(void (*registrar)(Napi::Object));
namespace {
const bool kBenchRegistered = AddExtraRegistrar(RegisterBench);
}  // namespace

}  // namespace tl
