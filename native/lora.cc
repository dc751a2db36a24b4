#include "handle.h"
namespace tl { void RegisterLora(Napi::Object) {} }
