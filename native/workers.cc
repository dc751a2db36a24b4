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
      SetError(CleanTorchMessage(e.what()));
    } catch (const std::exception& e) {
      SetError(CleanTorchMessage(e.what()));
    } catch (...) {
      SetError("torch-lora: unknown native error in a worker");
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(toJs_(env, result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {  // c10::Error included: toJs may finish the work
      deferred_.Reject(Napi::Error::New(env, CleanTorchMessage(e.what())).Value());
    }
    // Release the tensors on the main thread, where the work began.
    result_.clear();
    work_ = nullptr;
    toJs_ = nullptr;
  }

  void OnError(const Napi::Error& e) override {
    deferred_.Reject(e.Value());
    result_.clear();
    work_ = nullptr;
  }

 private:
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
