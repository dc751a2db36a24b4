/**
 * Element types and devices, spelled as in PyTorch without the `torch.` prefix.
 *
 * This module owns what a dtype or device name means and how a wrong one is worded: the native
 * side (native/handle.cc) only maps a name it receives to libtorch's ScalarType or Device.
 */
import { native } from "./binding";

/** The element types torch-lora supports. */
export type Dtype = "float32" | "float64" | "float16" | "bfloat16" | "int64" | "int32" | "uint8" | "bool";

/** `"cpu"`, `"cuda"` or `"cuda:N"`. */
export type Device = "cpu" | "cuda" | `cuda:${number}`;

/** What the library needs to know of a dtype. */
interface DtypeFacts {
  /** Size of one element in bytes. */
  bytes: number;
  /** Floating-point (can require gradients). */
  floating: boolean;
}

/** The one table of dtypes: every fact about a dtype is read from here. */
const DTYPE_TABLE: Readonly<Record<Dtype, DtypeFacts>> = {
  float32: { bytes: 4, floating: true },
  float64: { bytes: 8, floating: true },
  float16: { bytes: 2, floating: true },
  bfloat16: { bytes: 2, floating: true },
  int64: { bytes: 8, floating: false },
  int32: { bytes: 4, floating: false },
  uint8: { bytes: 1, floating: false },
  bool: { bytes: 1, floating: false },
};

/** Every supported dtype, in the table's order. */
export const DTYPES: readonly Dtype[] = Object.keys(DTYPE_TABLE) as Dtype[];

/** True when `value` is the name of a supported dtype. */
export function isDtype(value: unknown): value is Dtype {
  return typeof value === "string" && Object.prototype.hasOwnProperty.call(DTYPE_TABLE, value);
}

/** True for the floating-point dtypes (those that can require gradients); false for any other name. */
export function isFloatingDtype(dtype: string): boolean {
  return isDtype(dtype) && DTYPE_TABLE[dtype].floating;
}

/** Size of one element in bytes. */
export function dtypeSize(dtype: Dtype): number {
  return DTYPE_TABLE[dtype].bytes;
}

/** Throws a TypeError naming `arg` unless `value` is a supported dtype. */
export function checkDtype(value: unknown, arg: string): Dtype {
  if (!isDtype(value)) throw new TypeError(`${arg}: unknown dtype ${JSON.stringify(value)}; expected one of ${DTYPES.join(", ")}`);
  return value;
}

// At most three digits and no leading zero: c10 keeps a device index in 8 bits.
const DEVICE_NAME = /^(cpu|cuda|cuda:(0|[1-9]\d{0,2}))$/;
const DEVICE_SPELLINGS = '"cpu", "cuda" or "cuda:N"';

/** True when `value` is spelled as a device ("cpu", "cuda" or "cuda:N"), whether or not this machine has it. */
export function isDeviceName(value: unknown): value is Device {
  return typeof value === "string" && DEVICE_NAME.test(value);
}

let visibleCudaDevices: number | undefined;

/** CUDA devices this process sees (0 without CUDA): fixed once libtorch has initialised CUDA. */
function cudaDevices(): number {
  if (visibleCudaDevices === undefined) {
    const info = native.buildInfo();
    visibleCudaDevices = info.cudaAvailable ? info.cudaDeviceCount : 0;
  }
  return visibleCudaDevices;
}

/**
 * Throws unless `value` names a device this process can use: a TypeError naming `arg` for a
 * name that is not "cpu", "cuda" or "cuda:N", an Error when CUDA is not available, and a
 * RangeError for a CUDA index past the visible devices.
 */
export function checkDevice(value: unknown, arg: string): Device {
  if (!isDeviceName(value)) throw new TypeError(`${arg}: unknown device ${JSON.stringify(value)}; expected ${DEVICE_SPELLINGS}`);
  if (value === "cpu") return value;
  const count = cudaDevices();
  if (count === 0) {
    throw new Error(
      `${arg}: CUDA is not available (device "${value}"): this libtorch build has no CUDA support or no GPU is visible. ` +
        `Build torch-lora against a CUDA libtorch (see README) or use device "cpu".`,
    );
  }
  const index = value === "cuda" ? 0 : Number(value.slice("cuda:".length));
  if (index >= count) throw new RangeError(`${arg}: device "${value}" does not exist; ${count} CUDA device(s) are visible`);
  return value;
}

/**
 * Which of a dtype or a device one name is (the one-string form of `Tensor.to()`): a dtype name
 * is a dtype, a name spelled as a device is a device (whether this machine has it is
 * {@link checkDevice}'s to say). Anything else is a TypeError naming `arg` and saying what
 * either would be.
 */
export function dtypeOrDevice(value: string, arg: string): { dtype?: Dtype; device?: Device } {
  if (isDtype(value)) return { dtype: value };
  if (isDeviceName(value)) return { device: value };
  throw new TypeError(`${arg}: unknown dtype or device ${JSON.stringify(value)}; expected a dtype (${DTYPES.join(", ")}) or ${DEVICE_SPELLINGS}`);
}
