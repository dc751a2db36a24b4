/** Element types and devices, spelled as in PyTorch without the `torch.` prefix. */

/** The element types torch-lora supports. */
export type Dtype = "float32" | "float64" | "float16" | "bfloat16" | "int64" | "int32" | "uint8" | "bool";

/** `"cpu"`, `"cuda"` or `"cuda:N"`. */
export type Device = "cpu" | "cuda" | `cuda:${number}`;

export const DTYPES: readonly Dtype[] = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool"];

/** True for the floating-point dtypes (those that can require gradients). */
export function isFloatingDtype(dtype: Dtype): boolean {
  return dtype === "float32" || dtype === "float64" || dtype === "float16" || dtype === "bfloat16";
}

/** Size of one element in bytes. */
export function dtypeSize(dtype: Dtype): number {
  switch (dtype) {
    case "float64":
    case "int64":
      return 8;
    case "float32":
    case "int32":
      return 4;
    case "float16":
    case "bfloat16":
      return 2;
    default:
      return 1;
  }
}

/** Throws a TypeError naming `arg` unless `value` is a supported dtype. */
export function checkDtype(value: unknown, arg: string): Dtype {
  if (typeof value !== "string" || !(DTYPES as readonly string[]).includes(value)) {
    throw new TypeError(`${arg}: unknown dtype ${JSON.stringify(value)}; expected one of ${DTYPES.join(", ")}`);
  }
  return value as Dtype;
}

/** Throws a TypeError naming `arg` unless `value` is "cpu", "cuda" or "cuda:N". */
export function checkDevice(value: unknown, arg: string): Device {
  if (typeof value !== "string" || !/^(cpu|cuda|cuda:(0|[1-9]\d{0,2}))$/.test(value)) {
    throw new TypeError(`${arg}: unknown device ${JSON.stringify(value)}; expected "cpu", "cuda" or "cuda:N"`);
  }
  return value as Device;
}
