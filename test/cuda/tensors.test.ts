/** Tensors on cuda:0, init functions on CUDA tensors, and CPU↔GPU transfers. */
import { Tensor, cuda, init, manualSeed, randn, tensor, zeros } from "../../lib";
import type { Dtype } from "../../lib";
import { describeCuda } from "../helpers/cuda";

describeCuda("tensors on cuda:0", () => {
  test("the device is visible", () => {
    expect(cuda.deviceCount()).toBeGreaterThan(0);
  });

  test("a tensor created on cuda:0 lives there and computes what the CPU computes", () => {
    const a = tensor([[1, 2], [3, 4]], { device: "cuda:0" });
    const b = tensor([[5, 6], [7, 8]], { device: "cuda:0" });
    expect(a.device).toBe("cuda:0");
    const c = a.matmul(b).add(1);
    expect(c.device).toBe("cuda:0");
    // [[1·5+2·7, 1·6+2·8], [3·5+4·7, 3·6+4·8]] + 1, by hand.
    expect(c.cpu().toList()).toEqual([20, 23, 44, 51]);
  });

  for (const dtype of ["float32", "float64", "float16", "bfloat16", "int64"] as Dtype[]) {
    test(`CPU → GPU → CPU keeps every byte (${dtype})`, () => {
      manualSeed(5);
      const host = randn([17, 9]).mul(100).to({ dtype });
      const back = host.to({ device: "cuda:0" }).to({ device: "cpu" });
      expect(back.device).toBe("cpu");
      expect(back.dtype).toBe(dtype);
      expect(back.toBytes().equals(host.toBytes())).toBe(true);
    });
  }

  test("fromBytes/toBytes on the GPU move raw bytes both ways", () => {
    const values = new Float32Array([1.5, -2.25, 3e-8, 65504]);
    const t = Tensor.fromBytes(new Uint8Array(values.buffer), [2, 2], "float32", "cuda:0");
    expect(t.device).toBe("cuda:0");
    expect(Array.from(new Float32Array(new Uint8Array(t.toBytes()).buffer))).toEqual(Array.from(values));
  });

  test("a gradient computed on the GPU equals the hand-computed one", () => {
    const x = tensor([1, -2, 3], { device: "cuda:0", requiresGrad: true });
    x.mul(x).sum().backward();
    expect(x.grad!.device).toBe("cuda:0");
    expect(x.grad!.cpu().toList()).toEqual([2, -4, 6]);
  });
});

describeCuda("torch::nn::init on CUDA tensors", () => {
  const N = 200_000;

  test("zeros_, ones_ and constant_ write exactly", () => {
    const t = zeros([N], { device: "cuda:0" });
    init.constant_(t, 0.375);
    expect(t.cpu().eq(0.375).toArray().every((v) => v === 1)).toBe(true);
    init.zeros_(t);
    expect(t.abs().sum().item()).toBe(0);
  });

  test("normal_(mean 1, std 2): sample moments within 5 standard errors", () => {
    manualSeed(1);
    const t = init.normal_(zeros([N], { device: "cuda:0" }), 1, 2);
    const mean = t.mean().item();
    const std = t.sub(mean).pow(2).sum().div(N - 1).sqrt().item();
    expect(Math.abs(mean - 1)).toBeLessThan(5 * (2 / Math.sqrt(N)));
    expect(Math.abs(std - 2)).toBeLessThan(5 * (2 / Math.sqrt(2 * N)));
  });

  test("kaiming_uniform_(a=√5) stays within its bound √(6/((1+a²)·fan_in)) and fills it", () => {
    manualSeed(2);
    const fanIn = 64;
    const t = init.kaiming_uniform_(zeros([1000, fanIn], { device: "cuda:0" }), { a: Math.sqrt(5) });
    expect(t.device).toBe("cuda:0");
    const bound = Math.sqrt(6 / ((1 + 5) * fanIn));
    const maxAbs = t.abs().max().item();
    expect(maxAbs).toBeLessThanOrEqual(bound);
    expect(maxAbs).toBeGreaterThan(0.99 * bound);
  });

  test("the same seed gives the same CUDA init twice", () => {
    manualSeed(3);
    const a = init.xavier_normal_(zeros([32, 32], { device: "cuda:0" }));
    manualSeed(3);
    const b = init.xavier_normal_(zeros([32, 32], { device: "cuda:0" }));
    expect(a.equal(b)).toBe(true);
  });
});
