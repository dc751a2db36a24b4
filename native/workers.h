// Heavy work off the event loop: a Promise-returning AsyncWorker that runs a C++ closure on
// a libuv worker thread and converts its result to JS on the main thread.
#pragma once
#include <functional>
#include "torch_headers.h"

namespace tl {

/**
 * Runs `work` on a worker thread (with autograd recording off) and resolves the returned
 * Promise with `toJs(result)` on the main thread; an exception in `work` or `toJs` rejects it
 * with the cleaned message. `work` must only touch tensors it owns (captured by value); what
 * the main thread may read meanwhile (a weight's storage) is best changed in `toJs`.
 */
Napi::Promise RunAsync(Napi::Env env, const char* name, std::function<std::vector<at::Tensor>()> work,
                       std::function<Napi::Value(Napi::Env, std::vector<at::Tensor>&)> toJs);

}  // namespace tl
