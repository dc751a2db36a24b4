/** Tensors on cuda:0, init functions on CUDA tensors, and CPU↔GPU transfers. */
import { Tensor, cuda, init, manualSeed, randn, tensor, zeros } from "../../lib";
import type { Dtype } from "../../lib";
import { GPU, describeCuda, describeCudaOnly, rehearsal } from "../helpers/cuda";

describeCuda("tensors on cuda:0", () => {
  test("the device is visible, and isAvailable agrees with deviceCount", () => {
    expect(cuda.isAvailable()).toBe(cuda.deviceCount() > 0);
    if (!rehearsal) expect(cuda.deviceCount()).toBeGreaterThan(0);
  });

  test("a tensor created on cuda:0 lives there and computes what the CPU computes", () => {
    const a = tensor(
      [
        [1, 2],
        [3, 4],
      ],
      { device: GPU },
    );
    const b = tensor(
      [
        [5, 6],
        [7, 8],
      ],
      { device: GPU },
    );
    expect(a.device).toBe(GPU);
    const c = a.matmul(b).add(1);
    expect(c.device).toBe(GPU);
    // [[1·5+2·7, 1·6+2·8], [3·5+4·7, 3·6+4·8]] + 1, by hand.
    expect(c.cpu().toList()).toEqual([20, 23, 44, 51]);
  });

  test("a gradient computed on the GPU equals the hand-computed one", () => {
    const x = tensor([1, -2, 3], { device: GPU, requiresGrad: true });
    x.mul(x).sum().backward();
    expect(x.grad!.device).toBe(GPU);
    expect(x.grad!.cpu().toList()).toEqual([2, -4, 6]);
  });
});

describeCudaOnly("CPU ↔ GPU transfers", () => {
  for (const dtype of ["float32", "float64", "float16", "bfloat16", "int64"] as Dtype[]) {
    test(`CPU → GPU → CPU keeps every byte (${dtype})`, () => {
      manualSeed(5);
      const host = randn([17, 9]).mul(100).to({ dtype });
      const back = host.to({ device: GPU }).to({ device: "cpu" });
      expect(back.device).toBe("cpu");
      expect(back.dtype).toBe(dtype);
      expect(back.toBytes().equals(host.toBytes())).toBe(true);
    });
  }

  test("fromBytes/toBytes on the GPU move raw bytes both ways", () => {
    const values = new Float32Array([1.5, -2.25, 3e-8, 65504]);
    const t = Tensor.fromBytes(new Uint8Array(values.buffer), [2, 2], "float32", GPU);
    expect(t.device).toBe(GPU);
    expect(Array.from(new Float32Array(new Uint8Array(t.toBytes()).buffer))).toEqual(Array.from(values));
  });
});

describeCuda("torch::nn::init on CUDA tensors", () => {
  const N = 200_000;

  test("zeros_, ones_ and constant_ write exactly", () => {
    const t = zeros([N], { device: GPU });
    init.constant_(t, 0.375);
    expect(
      t
        .cpu()
        .eq(0.375)
        .toArray()
        .every((v) => v === 1),
    ).toBe(true);
    init.zeros_(t);
    expect(t.abs().sum().item()).toBe(0);
  });

  test("normal_(mean 1, std 2): sample moments within 5 standard errors", () => {
    manualSeed(1);
    const t = init.normal_(zeros([N], { device: GPU }), 1, 2);
    const mean = t.mean().item();
    const std = t
      .sub(mean)
      .pow(2)
      .sum()
      .div(N - 1)
      .sqrt()
      .item();
    expect(Math.abs(mean - 1)).toBeLessThan(5 * (2 / Math.sqrt(N)));
    expect(Math.abs(std - 2)).toBeLessThan(5 * (2 / Math.sqrt(2 * N)));
  });

  test("kaiming_uniform_(a=√5) stays within its bound √(6/((1+a²)·fan_in)) and fills it", () => {
    manualSeed(2);
    const fanIn = 64;
    const t = init.kaiming_uniform_(zeros([1000, fanIn], { device: GPU }), { a: Math.sqrt(5) });
    expect(t.device).toBe(GPU);
    const bound = Math.sqrt(6 / ((1 + 5) * fanIn));
    const maxAbs = t.abs().max().item();
    expect(maxAbs).toBeLessThanOrEqual(bound);
    expect(maxAbs).toBeGreaterThan(0.99 * bound);
  });

  test("the same seed gives the same CUDA init twice", () => {
    manualSeed(3);
    const a = init.xavier_normal_(zeros([32, 32], { device: GPU }));
    manualSeed(3);
    const b = init.xavier_normal_(zeros([32, 32], { device: GPU }));
    expect(a.equal(b)).toBe(true);
  });
});
