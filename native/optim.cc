#include "handle.h"
namespace tl { void RegisterOptim(Napi::Object) {} }
