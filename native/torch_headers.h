// The heavy headers, compiled once as a precompiled header (see CMakeLists.txt).
#pragma once
#include <torch/torch.h>
#include <napi.h>
