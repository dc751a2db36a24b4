// Process-wide malloc tuning for small-tensor workloads (glibc only).
//
// Why: JS drops a tensor only when the garbage collector runs, so the C++ objects of a hundred
// thousand small results (TensorImpl, storage, data, handle) are freed in one burst, where
// Python frees each one as soon as its last reference goes. In glibc's allocator such bursts
// fill the "fastbins", and each later free that coalesces past 64 KiB walks them all
// (malloc_consolidate): a quarter of the time of `a.add(b)` on 4 floats went there. With
// fastbins off (M_MXFAST = 0), small blocks are served by the per-thread cache and the ordinary
// bins, and that op became about 20% faster (measured with bench/cases/tiny-ops.ts).
// TORCH_LORA_MALLOC_TUNING=0 leaves the allocator as it was.
#include <cstdlib>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace tl {

void TuneMalloc() {
#if defined(__GLIBC__) && defined(M_MXFAST)
  const char* setting = std::getenv("TORCH_LORA_MALLOC_TUNING");
  if (setting != nullptr && std::strcmp(setting, "0") == 0) return;
  mallopt(M_MXFAST, 0);
#endif
}

}  // namespace tl
