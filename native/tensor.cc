// Tensor creation, properties and data transfer between JS memory and libtorch.
#include "handle.h"
#include "errors.h"
#include "options.h"

namespace tl {
namespace {

// The `dtype` and `device` fields of a creation call's options.
at::TensorOptions DtypeDeviceOptions(const Napi::Object& o) {
  at::ScalarType dtype = ParseDtype(o.Env(), StringOption(o, "dtype"), "dtype");
  at::Device device = ParseDevice(o.Env(), StringOption(o, "device"), "device");
  return at::TensorOptions().dtype(dtype).device(device);
}

// The `shape` field. The factories leave negative sizes to ATen, which refuses them.
std::vector<int64_t> ShapeOption(const Napi::Object& o) {
  c10::optional<std::vector<int64_t>> shape = OptionalIntListOption(o, "shape");
  if (!shape) ThrowTypeError(o.Env(), "shape: expected an array of integers, got " + Describe(o.Get("shape")));
  return *shape;
}

// The `shape` of a tensor filled from JS memory: the byte count copied is computed from it,
// so a negative size (two of them multiply to a positive count) is refused here.
std::vector<int64_t> DataShapeOption(const Napi::Object& o) {
  std::vector<int64_t> shape = ShapeOption(o);
  for (int64_t d : shape) {
    if (d < 0) ThrowRangeError(o.Env(), "shape: dimensions must be >= 0, got " + std::to_string(d));
  }
  return shape;
}

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

at::Tensor WithGrad(at::Tensor t, const Napi::Object& o) {
  if (BoolOption(o, "requiresGrad", false)) t.set_requires_grad(true);
  return t;
}

at::ScalarType TypedArrayScalarType(Napi::Env env, napi_typedarray_type type) {
  switch (type) {
    case napi_float32_array:
      return at::kFloat;
    case napi_float64_array:
      return at::kDouble;
    case napi_int32_array:
      return at::kInt;
    case napi_uint8_array:
    case napi_uint8_clamped_array:
      return at::kByte;
    case napi_int8_array:
      return at::kChar;
    case napi_int16_array:
      return at::kShort;
    case napi_bigint64_array:
      return at::kLong;
    default:
      ThrowTypeError(env,
                     "data: unsupported typed array type (use Float32Array, Float64Array, Int32Array, Uint8Array, Int8Array, Int16Array or "
                     "BigInt64Array)");
  }
}

// The typed array in field `key` (its bytes are read, so nothing else will do).
Napi::TypedArray TypedArrayOption(const Napi::Object& o, const char* key, const char* expected) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray()) ThrowTypeError(o.Env(), std::string(key) + ": expected " + expected + ", got " + Describe(v));
  return v.As<Napi::TypedArray>();
}

// fromTypedArray({ data, shape, dtype, device, requiresGrad }): copies the values, converting to dtype.
Napi::Value FromTypedArray(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  Napi::TypedArray data = TypedArrayOption(o, "data", "a typed array");
  std::vector<int64_t> shape = DataShapeOption(o);
  at::TensorOptions options = DtypeDeviceOptions(o);
  if (Numel(shape) != static_cast<int64_t>(data.ElementLength())) {
    ThrowRangeError(info.Env(), "shape: [" + c10::Join(", ", shape) + "] holds " + std::to_string(Numel(shape)) +
                                    " elements but data has " + std::to_string(data.ElementLength()));
  }
  at::ScalarType source = TypedArrayScalarType(info.Env(), data.TypedArrayType());
  auto* bytes = static_cast<uint8_t*>(data.ArrayBuffer().Data()) + data.ByteOffset();
  at::Tensor staged = at::empty(shape, at::TensorOptions().dtype(source));
  if (data.ByteLength()) std::memcpy(staged.data_ptr(), bytes, data.ByteLength());
  return WrapTensor(info.Env(), WithGrad(staged.to(options), o));
}

// fromBytes({ bytes, shape, dtype, device }): raw little-endian element bytes of `dtype`.
Napi::Value FromBytes(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  Napi::TypedArray data = TypedArrayOption(o, "bytes", "a Buffer or Uint8Array");
  std::vector<int64_t> shape = DataShapeOption(o);
  at::TensorOptions options = DtypeDeviceOptions(o);
  int64_t expected = Numel(shape) * static_cast<int64_t>(c10::elementSize(c10::typeMetaToScalarType(options.dtype())));
  if (expected != static_cast<int64_t>(data.ByteLength())) {
    ThrowRangeError(info.Env(), "bytes: shape [" + c10::Join(", ", shape) + "] of " +
                                    DtypeName(c10::typeMetaToScalarType(options.dtype())) + " needs " + std::to_string(expected) +
                                    " bytes, got " + std::to_string(data.ByteLength()));
  }
  at::Tensor t = at::empty(shape, options.device(at::kCPU));
  auto* bytes = static_cast<uint8_t*>(data.ArrayBuffer().Data()) + data.ByteOffset();
  if (expected) std::memcpy(t.data_ptr(), bytes, expected);
  return WrapTensor(info.Env(), options.device() == t.device() ? t : t.to(options.device()));
}

at::Tensor CpuContiguous(const at::Tensor& t) { return t.detach().to(at::kCPU).contiguous(); }

// toBytes(t): a Buffer copy of the raw element bytes (CPU, contiguous, little-endian).
Napi::Value ToBytes(const Napi::CallbackInfo& info) {
  at::Tensor t = CpuContiguous(TensorArg(info, 0, "tensor"));
  size_t n = t.numel() * t.element_size();
  return Napi::Buffer<uint8_t>::Copy(info.Env(), n ? static_cast<uint8_t*>(t.data_ptr()) : nullptr, n);
}

template <typename ArrayT>
Napi::Value CopyOut(Napi::Env env, const at::Tensor& t) {
  auto out = ArrayT::New(env, t.numel());
  if (t.numel()) std::memcpy(out.Data(), t.data_ptr(), t.numel() * t.element_size());
  return out;
}

// toArray(t): a typed copy of the values (float16/bfloat16 widen to Float32Array).
Napi::Value ToArray(const Napi::CallbackInfo& info) {
  at::Tensor t = CpuContiguous(TensorArg(info, 0, "tensor"));
  Napi::Env env = info.Env();
  switch (t.scalar_type()) {
    case at::kFloat:
      return CopyOut<Napi::Float32Array>(env, t);
    case at::kHalf:
    case at::kBFloat16:
      return CopyOut<Napi::Float32Array>(env, t.to(at::kFloat));
    case at::kDouble:
      return CopyOut<Napi::Float64Array>(env, t);
    case at::kLong:
      return CopyOut<Napi::TypedArrayOf<int64_t>>(env, t);
    case at::kInt:
      return CopyOut<Napi::Int32Array>(env, t);
    case at::kByte:
      return CopyOut<Napi::Uint8Array>(env, t);
    case at::kBool:
      return CopyOut<Napi::Uint8Array>(env, t.to(at::kByte));
    default:
      ThrowTypeError(env, std::string("tensor: cannot copy dtype ") + DtypeName(t.scalar_type()) + " out");
  }
}

// item(t): ATen refuses a tensor of more or fewer than one element; lib/tensor.ts words it.
Napi::Value Item(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  return Napi::Number::New(info.Env(), t.item<double>());
}

// factory({ kind, shape, dtype, device, requiresGrad, fill }): fill is read for kind "full" only.
Napi::Value Factory(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  std::string kind = StringOption(o, "kind");
  std::vector<int64_t> shape = ShapeOption(o);
  at::TensorOptions options = DtypeDeviceOptions(o);
  at::Tensor t;
  if (kind == "zeros")
    t = at::zeros(shape, options);
  else if (kind == "ones")
    t = at::ones(shape, options);
  else if (kind == "empty")
    t = at::empty(shape, options);
  else if (kind == "rand")
    t = at::rand(shape, options);
  else if (kind == "randn")
    t = at::randn(shape, options);
  else if (kind == "full")
    t = at::full(shape, NumberOption(o, "fill"), options);
  else
    ThrowTypeError(info.Env(), "kind: unknown factory \"" + kind + "\"");
  return WrapTensor(info.Env(), WithGrad(t, o));
}

// arange({ start, end, step, dtype, device, requiresGrad })
Napi::Value Arange(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  double start = NumberOption(o, "start"), end = NumberOption(o, "end"), step = NumberOption(o, "step");
  return WrapTensor(info.Env(), WithGrad(at::arange(start, end, step, DtypeDeviceOptions(o)), o));
}

// meta(t) -> [shape, dtype, device, requiresGrad, isLeaf]: one call for all properties.
Napi::Value Meta(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  Napi::Env env = info.Env();
  Napi::Array shape = Napi::Array::New(env, t.dim());
  for (int64_t d = 0; d < t.dim(); ++d) shape.Set(static_cast<uint32_t>(d), Napi::Number::New(env, t.size(d)));
  Napi::Array out = Napi::Array::New(env, 5);
  out.Set(0u, shape);
  out.Set(1u, Napi::String::New(env, DtypeName(t.scalar_type())));
  out.Set(2u, Napi::String::New(env, DeviceName(t.device())));
  out.Set(3u, Napi::Boolean::New(env, t.requires_grad()));
  out.Set(4u, Napi::Boolean::New(env, t.is_leaf()));
  return out;
}

Napi::Value Shape(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  Napi::Array shape = Napi::Array::New(info.Env(), t.dim());
  for (int64_t d = 0; d < t.dim(); ++d) shape.Set(static_cast<uint32_t>(d), Napi::Number::New(info.Env(), t.size(d)));
  return shape;
}

Napi::Value Dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DtypeName(TensorArg(info, 0, "tensor").scalar_type()));
}

Napi::Value Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DeviceName(TensorArg(info, 0, "tensor").device()));
}

Napi::Value Numel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(TensorArg(info, 0, "tensor").numel()));
}

// version(t): libtorch's version counter of t's memory, moved on by every in-place write.
Napi::Value Version(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(TensorArg(info, 0, "tensor")._version()));
}

// to(t, dtype | null, device | null)
Napi::Value To(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  at::ScalarType dtype = info[1].IsString() ? ParseDtype(info.Env(), StringArg(info, 1, "dtype"), "dtype") : t.scalar_type();
  at::Device device = info[2].IsString() ? ParseDevice(info.Env(), StringArg(info, 2, "device"), "device") : t.device();
  return WrapTensor(info.Env(), t.to(device, dtype));
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  DisposeHandle(info, 0);
  return info.Env().Undefined();
}

// pauseExternalMemoryReports(paused) -> previous setting
Napi::Value PauseExternalMemoryReports(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), PauseExternalReports(info[0].ToBoolean().Value()));
}

Napi::Value ReportExternalMemory(const Napi::CallbackInfo& info) {
  ReportHandle(info, 0);
  return info.Env().Undefined();
}

// The external-memory total V8 holds for this isolate (adjusting by 0 returns it): what the
// collector sees, for tests and diagnostics. Node's process.memoryUsage().external omits it.
Napi::Value ReportedExternalMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Napi::MemoryManagement::AdjustExternalMemory(info.Env(), 0)));
}

Napi::Value IsDisposed(const Napi::CallbackInfo& info) {
  try {
    TensorArg(info, 0, "tensor");
    return Napi::Boolean::New(info.Env(), false);
  } catch (const Napi::Error&) {
    return Napi::Boolean::New(info.Env(), true);
  }
}

// memoryStats() -> { liveTensors, liveBytes }: what leak checks count (see LiveTensors).
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  LiveTensorStats s = LiveTensors();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("liveTensors", static_cast<double>(s.tensors));
  out.Set("liveBytes", static_cast<double>(s.bytes));
  return out;
}

}  // namespace

void RegisterTensor(Napi::Object exports) {
  TL_EXPORT(exports, "fromTypedArray", FromTypedArray);
  TL_EXPORT(exports, "fromBytes", FromBytes);
  TL_EXPORT(exports, "toBytes", ToBytes);
  TL_EXPORT(exports, "toArray", ToArray);
  TL_EXPORT(exports, "item", Item);
  TL_EXPORT(exports, "factory", Factory);
  TL_EXPORT(exports, "arange", Arange);
  TL_EXPORT(exports, "meta", Meta);
  TL_EXPORT(exports, "shape", Shape);
  TL_EXPORT(exports, "dtype", Dtype);
  TL_EXPORT(exports, "device", Device);
  TL_EXPORT(exports, "numel", Numel);
  TL_EXPORT(exports, "version", Version);
  TL_EXPORT(exports, "to", To);
  TL_EXPORT(exports, "dispose", Dispose);
  TL_EXPORT(exports, "isDisposed", IsDisposed);
  TL_EXPORT(exports, "memoryStats", MemoryStats);
  TL_EXPORT(exports, "pauseExternalMemoryReports", PauseExternalMemoryReports);
  TL_EXPORT(exports, "reportExternalMemory", ReportExternalMemory);
  TL_EXPORT(exports, "reportedExternalMemory", ReportedExternalMemory);
}

}  // namespace tl
