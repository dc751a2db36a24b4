// Named options objects: entry points with more than three arguments take one object whose
// fields are read by name here, so that the TypeScript and C++ sides cannot disagree on order.
// These are the only readers of such fields: each checks the JS type of one field (what memory
// safety needs) and, when it is wrong, throws a TypeError (a RangeError for a ranged integer)
// worded "<field>: expected <what>, got <value>". Whether a value makes sense is the facade's to
// check (lib/); these readers do not second-guess it.
#pragma once

#include "torch_headers.h"

namespace tl {

/** Argument `i` as an object (not an array or a handle); anything else is a TypeError naming `name`. */
Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t i, const char* name = "options");

// ---- numbers and flags ----------------------------------------------------------------------

/** An integral number field (exact below 2^53). */
int64_t IntOption(const Napi::Object& options, const char* key);
/** An integer field in [lo, hi] (the range a native loop or a backend relies on); a RangeError otherwise. */
int64_t IntOption(const Napi::Object& options, const char* key, int64_t lo, int64_t hi);
/** Like IntOption; undefined or null give nullopt. */
c10::optional<int64_t> OptionalIntOption(const Napi::Object& options, const char* key);
/** A number field. */
double NumberOption(const Napi::Object& options, const char* key);
/** A number field; undefined gives `fallback`. */
double NumberOption(const Napi::Object& options, const char* key, double fallback);
/** A boolean field. */
bool BoolOption(const Napi::Object& options, const char* key);
/** A boolean field; undefined gives `fallback`. */
bool BoolOption(const Napi::Object& options, const char* key, bool fallback);
/** A string field. */
std::string StringOption(const Napi::Object& options, const char* key);
/** Like StringOption; undefined or null give nullopt. */
c10::optional<std::string> OptionalStringOption(const Napi::Object& options, const char* key);

// ---- lists ----------------------------------------------------------------------------------

/** A list-of-numbers field. */
std::vector<double> NumberListOption(const Napi::Object& options, const char* key);
/** A list-of-integers field; undefined or null give nullopt. */
c10::optional<std::vector<int64_t>> OptionalIntListOption(const Napi::Object& options, const char* key);
/** A shape field: a list of non-negative integers. */
std::vector<int64_t> ShapeOption(const Napi::Object& options, const char* key);

// ---- tensors --------------------------------------------------------------------------------

/** A Tensor handle field. */
at::Tensor& TensorOption(const Napi::Object& options, const char* key);
/** Like TensorOption; undefined or null give an undefined tensor. */
at::Tensor OptionalTensorOption(const Napi::Object& options, const char* key);
/** A list-of-Tensor-handles field. */
std::vector<at::Tensor> TensorListOption(const Napi::Object& options, const char* key);

/** A string field. */
std::string StringOption(const Napi::Object& options, const char* key);
/** An array-of-Tensor-handles field; a disposed or foreign handle is an error naming `key[k]`. */
std::vector<at::Tensor> TensorListOption(const Napi::Object& options, const char* key);

}  // namespace tl
