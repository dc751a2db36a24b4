/**
 * Compile-time checks of the package's entry point (compiled by `tsc --noEmit -p test/types`, see
 * types.test.ts; never run): the options of the core API are typed, so a wrong dtype, device,
 * option value or result type fails to compile.
 */
import { ConfigError, Tensor, TorchLoraError, cuda, memoryStats, optim, tensor, tidy, zeros } from "../../lib";
import type { Device, Dtype, MemoryStats } from "../../lib";

export function publicApiUses(): void {
  const x: Tensor = tensor([1, 2, 3], { dtype: "float32" });
  // @ts-expect-error "float128" is not a Dtype
  tensor([1], { dtype: "float128" });
  const dtype: Dtype = x.dtype;
  const onDevice: Tensor = x.to("cuda:1");
  // @ts-expect-error "gpu" is neither a Dtype nor a Device
  x.to("gpu");
  const device: Device = "cuda:0";

  // tidy returns what its callback returns.
  const kept: Tensor = tidy(() => zeros([2]));
  // @ts-expect-error a Tensor is not a string
  const wrong: string = tidy(() => zeros([2]));

  const stats: MemoryStats = memoryStats();
  const live: number = stats.liveTensors + stats.liveBytes;
  const available: boolean = cuda.isAvailable();

  const params = [zeros([2], { requiresGrad: true })];
  const adamw = new optim.AdamW(params, { lr: 1e-3, betas: [0.9, 0.999] });
  // @ts-expect-error lr is a number
  new optim.AdamW(params, { lr: "1e-3" });
  adamw.step();

  const error: TorchLoraError = new ConfigError("r: expected a positive integer, got 0");
  void [dtype, onDevice, device, kept, wrong, live, available, error];
}
