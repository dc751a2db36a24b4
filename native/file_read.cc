// Reading checkpoint bytes straight into a tensor's memory: fromPretrained fills a CPU
// parameter whose dtype matches the file's without a staging buffer or a second copy, so a load
// peaks at the model's size. The read runs on a worker thread (readIntoTensorAsync).
#include <cerrno>
#include <cstring>
#include <unistd.h>
#include "errors.h"
#include "handle.h"
#include "options.h"
#include "workers.h"

namespace tl {
namespace {

struct ReadArgs {
  int fd;
  int64_t position;
  at::Tensor target;
};

ReadArgs ReadArgsOf(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0, "options");
  const int64_t fd = IntOption(o, "fd", 0, INT32_MAX);
  const int64_t position = IntOption(o, "position", 0, INT64_MAX);
  return {static_cast<int>(fd), position, TensorOption(o, "target")};
}

// Only a contiguous CPU tensor is one run of bytes in this process's memory; the caller copies
// into any other through a staging tensor. The caller checks the dtype (lib/io/read-into.ts).
bool Readable(const at::Tensor& t) { return t.device().is_cpu() && t.is_contiguous(); }

// pread until the tensor is full; a file that ends first is an error naming how far it got.
void ReadAll(int fd, int64_t position, const at::Tensor& target) {
  char* out = static_cast<char*>(target.data_ptr());
  const size_t total = target.nbytes();
  size_t done = 0;
  while (done < total) {
    const ssize_t n = pread(fd, out + done, total - done, static_cast<off_t>(position + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(std::string("readIntoTensor: ") + std::strerror(errno));
    if (n == 0) {
      throw std::runtime_error("readIntoTensor: the file ended after " + std::to_string(done) + " of " + std::to_string(total) + " bytes");
    }
    done += static_cast<size_t>(n);
  }
}

// readIntoTensorAsync({ fd, position, target }) -> Promise<boolean>: whether it filled target's
// bytes from the file at position, read on a worker thread (false, touching nothing, for a tensor
// that is not contiguous on the CPU).
Napi::Value ReadIntoTensorAsync(const Napi::CallbackInfo& info) {
  ReadArgs a = ReadArgsOf(info);
  const bool readable = Readable(a.target);
  return RunAsync(
      info.Env(), "torch-lora:read",
      [a, readable]() {
        if (readable) {
          ReadAll(a.fd, a.position, a.target);
          MarkWritten({a.target});
        }
        return std::vector<at::Tensor>{};
      },
      [readable](Napi::Env env, std::vector<at::Tensor>&) { return Napi::Boolean::New(env, readable); });
}

}  // namespace

void RegisterFileRead(Napi::Object exports) { TL_EXPORT(exports, "readIntoTensorAsync", ReadIntoTensorAsync); }

}  // namespace tl
