// Named options objects: entry points with more than three arguments take one object whose
// fields are read by name here, so that the TypeScript and C++ sides cannot disagree on order.
#pragma once

#include "torch_headers.h"

namespace tl {

/** Argument `i` as an object; anything else is a TypeError naming `name`. */
Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t i, const char* name = "options");

/** An integral number field (exact below 2^53). */
int64_t IntOption(const Napi::Object& options, const char* key);
/** Like IntOption; undefined or null give nullopt. */
c10::optional<int64_t> OptionalIntOption(const Napi::Object& options, const char* key);
/** A number field. */
double NumberOption(const Napi::Object& options, const char* key);
/** A boolean field; undefined gives `fallback`. */
bool BoolOption(const Napi::Object& options, const char* key, bool fallback);
/** A list-of-integers field; undefined or null give nullopt. */
c10::optional<std::vector<int64_t>> OptionalIntListOption(const Napi::Object& options, const char* key);
/** A Tensor handle field. */
at::Tensor& TensorOption(const Napi::Object& options, const char* key);

/** A string field. */
std::string StringOption(const Napi::Object& options, const char* key);
/** An array-of-Tensor-handles field; a disposed or foreign handle is an error naming `key[k]`. */
std::vector<at::Tensor> TensorListOption(const Napi::Object& options, const char* key);

}  // namespace tl
