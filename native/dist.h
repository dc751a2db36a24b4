// c10d process groups (native/dist.cc): what the addon's buildInfo() needs to know of them.
#pragma once
#include <napi.h>

namespace tl {

/** The c10d backends compiled into this addon: "gloo", "nccl" (possibly none). */
Napi::Array DistBackends(Napi::Env env);

}  // namespace tl
