#include "workers.h"
#include "errors.h"

namespace tl {
namespace {

class TensorWorker : public Napi::AsyncWorker {
 public:
  TensorWorker(Napi::Env env, const char* name, std::function<std::vector<at::Tensor>()> work,
               std::function<Napi::Value(Napi::Env, std::vector<at::Tensor>&)> toJs)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), toJs_(std::move(toJs)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      at::NoGradGuard noGrad;
      result_ = work_();
    } catch (const c10::Error& e) {
      error_ = CleanTorchMessage(e.what());
    } catch (const std::exception& e) {
      error_ = CleanTorchMessage(e.what());
    } catch (...) {
      error_ = "torch-lora: unknown native error in a worker";
    }
  }

  // Replaces node-addon-api's completion, which calls OnOK/OnError through a wrapper that
  // rethrows a failed JS call as a C++ exception. When the environment is being torn down (a
  // worker thread terminated, or process.exit() called with this work in flight), every JS
  // call fails; such an exception escaping here reaches std::terminate and aborts the whole
  // process. Nobody can observe the promise any more then, so the result is dropped instead.
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    if (status != napi_cancelled) {
      try {
        Napi::HandleScope scope(env);
        Settle(env);
      } catch (...) {
        // The environment is going away: its promise can no longer be settled.
      }
    }
    Release();
    Destroy();
  }

 private:
  void Settle(Napi::Env env) {
    if (!error_.empty()) {
      deferred_.Reject(Napi::Error::New(env, error_).Value());
      return;
    }
    try {
      deferred_.Resolve(toJs_(env, result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {  // c10::Error included: toJs may finish the work
      deferred_.Reject(Napi::Error::New(env, CleanTorchMessage(e.what())).Value());
    }
  }

  // Drops the tensors on the main thread, where the work began.
  void Release() noexcept {
    result_.clear();
    work_ = nullptr;
    toJs_ = nullptr;
  }

  std::string error_;
  Napi::Promise::Deferred deferred_;
  std::function<std::vector<at::Tensor>()> work_;
  std::function<Napi::Value(Napi::Env, std::vector<at::Tensor>&)> toJs_;
  std::vector<at::Tensor> result_;
};

}  // namespace

Napi::Promise RunAsync(Napi::Env env, const char* name, std::function<std::vector<at::Tensor>()> work,
                       std::function<Napi::Value(Napi::Env, std::vector<at::Tensor>&)> toJs) {
  auto* worker = new TensorWorker(env, name, std::move(work), std::move(toJs));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace tl
