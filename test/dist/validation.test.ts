/**
 * Checks in the process itself: init-method and option validation (clear ConfigErrors, nothing
 * started), a backend that is not compiled in, and argument errors of collectives on a
 * one-process group, which must leave the tensors untouched.
 */
import { dist, tensor, zeros } from "../../lib";
import { resolveRendezvous } from "../../lib/dist/init-method";
import { freePort } from "./support/ranks";

const gloo = dist.isAvailable("gloo");
const itGloo = gloo ? it : it.skip;

describe("resolveRendezvous", () => {
  const env = { MASTER_ADDR: "10.0.0.1", MASTER_PORT: "29500", RANK: "1", WORLD_SIZE: "4" };

  it("env:// reads MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE; options win over RANK and WORLD_SIZE", () => {
    expect(resolveRendezvous({}, env)).toEqual({ host: "10.0.0.1", port: 29500, rank: 1, worldSize: 4 });
    expect(resolveRendezvous({ rank: 0, worldSize: 2 }, env)).toEqual({ host: "10.0.0.1", port: 29500, rank: 0, worldSize: 2 });
  });

  it("tcp://host:port, IPv6 in brackets", () => {
    expect(resolveRendezvous({ initMethod: "tcp://node0:1234", rank: 2, worldSize: 3 }, {})).toEqual({ host: "node0", port: 1234, rank: 2, worldSize: 3 });
    expect(resolveRendezvous({ initMethod: "tcp://[::1]:80", rank: 0, worldSize: 1 }, {})).toMatchObject({ host: "::1", port: 80 });
  });

  it.each([
    [{}, { ...env, MASTER_ADDR: undefined }, /needs MASTER_ADDR/],
    [{}, { ...env, MASTER_PORT: undefined }, /needs MASTER_PORT/],
    [{}, { ...env, MASTER_PORT: "70000" }, /MASTER_PORT: expected a TCP port \(1-65535\), got 70000/],
    [{}, { ...env, RANK: "4" }, /RANK: expected an integer in \[0, 3\] \(world size 4\), got 4/],
    [{}, { ...env, WORLD_SIZE: "0" }, /WORLD_SIZE: expected an integer >= 1, got the string "0"/],
    [{ rank: -1 }, env, /rank: expected an integer >= 0, got -1/],
    [{ worldSize: 2.5 }, env, /worldSize: expected an integer >= 1, got 2.5/],
    [{}, { MASTER_ADDR: "a", MASTER_PORT: "1", WORLD_SIZE: "2" }, /rank: not given, and RANK is not set/],
    [{ initMethod: "file:///tmp/x" }, env, /initMethod: expected "env:\/\/" or "tcp:\/\/host:port", got "file:\/\/\/tmp\/x"/],
    [{ initMethod: "tcp://host" }, env, /initMethod: expected/],
    [{ initMethod: "tcp://host:port" }, env, /initMethod port: expected an integer >= 1/],
  ])("%j with %j: a ConfigError", (options, e, message) => {
    expect(() => resolveRendezvous(options as never, e)).toThrow(message);
  });
});

describe("initProcessGroup option checks", () => {
  it("reports which backends are compiled in, in buildInfo() too", () => {
    const { native } = require("../../lib/binding");
    expect(native.buildInfo().distBackends).toEqual(dist.availableBackends());
    expect(dist.isAvailable("gloo")).toBe(dist.availableBackends().includes("gloo"));
  });

  (dist.isAvailable("nccl") ? it.skip : it)("a backend not compiled in: a ConfigError naming it and what to install", async () => {
    await expect(dist.initProcessGroup({ backend: "nccl", rank: 0, worldSize: 1, initMethod: "tcp://127.0.0.1:1" })).rejects.toThrow(
      /backend: "nccl" is not compiled into this torch-lora addon \(compiled in: .*\)\. NCCL comes with a CUDA build of libtorch/,
    );
    expect(dist.isInitialized()).toBe(false);
  });

  it("an unknown backend, a bad timeout", async () => {
    await expect(dist.initProcessGroup({ backend: "mpi" as never })).rejects.toThrow(/backend: expected "gloo" or "nccl", got the string "mpi"/);
    if (gloo) await expect(dist.initProcessGroup({ timeoutMs: 0 })).rejects.toThrow(/timeoutMs: expected an integer >= 1, got 0/);
  });

  it("collectives without a process group: a StateError saying to initialize", async () => {
    expect(() => dist.allReduce(zeros([2]))).toThrow(/allReduce: no process group; call await dist.initProcessGroup\(\) first/);
    expect(dist.getRank()).toBe(0);
    expect(dist.getWorldSize()).toBe(1);
    expect(dist.isMainProcess()).toBe(true);
  });
});

describe("a one-process Gloo group", () => {
  afterAll(() => dist.destroyProcessGroup());

  itGloo("runs collectives (world size 1), refuses bad arguments without touching tensors, and refuses a second init", async () => {
    const port = await freePort();
    const g = await dist.initProcessGroup({ initMethod: `tcp://127.0.0.1:${port}`, rank: 0, worldSize: 1, timeoutMs: 10_000 });
    expect([g.rank, g.size, g.backend, dist.isInitialized()]).toEqual([0, 1, "gloo", true]);
    await expect(dist.initProcessGroup({ initMethod: `tcp://127.0.0.1:${port}`, rank: 0, worldSize: 1 })).rejects.toThrow(/already exists/);

    const t = tensor([1, 2, 3]);
    await dist.allReduce(t, { op: "avg" });
    expect(t.toList()).toEqual([1, 2, 3]);
    expect(() => dist.allReduce(t, { op: "mean" as never })).toThrow(/op: expected one of "sum", "avg", "max", "min", "product", got the string "mean"/);
    expect(() => dist.allReduce(tensor([1, 2], { dtype: "int64" }), { op: "avg" })).toThrow(/tensors\[0\]: op "avg" needs a floating-point tensor, got int64/);
    expect(() => dist.broadcast(t, { src: 1 })).toThrow(/src: expected a rank in \[0, 0\], got 1/);
    expect(() => dist.allGather([zeros([3]), zeros([3])], t)).toThrow(/outputs: expected 1 tensors \(one per rank\), got 2/);
    expect(() => dist.allGather([zeros([2])], t)).toThrow(/outputs\[0\]: expected shape \[3\] float32 on cpu like input, got shape \[2\] float32 on cpu/);
    expect(() => dist.allReduce([] as never)).toThrow(/tensors: expected a Tensor or a non-empty array of Tensors/);
    expect(t.toList()).toEqual([1, 2, 3]);
    // A view that is not contiguous would be read and written as if it were: refused natively.
    const m = tensor([[1, 2], [3, 4]]);
    expect(() => dist.allReduceSync(m.t())).toThrow(/tensors\[0\]: a collective needs a contiguous tensor/);
    expect(() => dist.broadcastSync(m.narrow(1, 0, 1))).toThrow(/tensors\[0\]: a collective needs a contiguous tensor/);
    expect(() => dist.allGatherSync([zeros([2, 2]).t()], m)).toThrow(/outputs\[0\]: a collective needs a contiguous tensor/);
    expect(m.toList()).toEqual([1, 2, 3, 4]);

    const outs = [zeros([3])];
    dist.allGatherSync(outs, t);
    expect(outs[0].toList()).toEqual([1, 2, 3]);
    await dist.barrier();

    dist.destroyProcessGroup();
    expect(dist.isInitialized()).toBe(false);
    expect(() => g.allReduceSync(t)).toThrow(/allReduce: the process group was destroyed/);
  });
});

describe("DataParallel with overlap on a one-process Gloo group", () => {
  afterAll(() => dist.destroyProcessGroup());

  itGloo("starts bucket all-reduces during backward, refuses two backward passes per sync, and stops after dispose()", async () => {
    const { nn } = require("../../lib");
    const port = await freePort();
    await dist.initProcessGroup({ initMethod: `tcp://127.0.0.1:${port}`, rank: 0, worldSize: 1, timeoutMs: 10_000 });
    const model = new nn.Sequential(new nn.Linear(4, 8), new nn.Linear(8, 3));
    const dp = await dist.DataParallel.create(model, { overlap: true, bucketCapMb: 0.0001 }); // 104 bytes: 4 buckets
    expect(dp.buckets.map((b) => b.length)).toEqual([1, 1, 1, 1]);
    const x = tensor([[1, 2, 3, 4]]);
    const loss = () => (model.forward(x) as ReturnType<typeof tensor>).pow(2).sum();

    loss().backward();
    const grads = model.parameters().map((p: { grad: { toList(): number[] } }) => p.grad.toList());
    await dp.syncGradients();
    expect(dp.startedDuringBackward).toBe(4); // every bucket was launched from its hook
    // World size 1: the average is the gradient itself.
    expect(model.parameters().map((p: { grad: { toList(): number[] } }) => p.grad.toList())).toEqual(grads);

    loss().backward();
    loss().backward(); // the second pass changes gradients whose all-reduce already started
    await expect(dp.syncGradients()).rejects.toThrow(/a gradient changed after its all-reduce had started \(two backward passes before one syncGradients\?\)/);
    loss().backward(); // the next step works again
    await dp.syncGradients();

    dp.dispose();
    loss().backward();
    await expect(dp.syncGradients()).rejects.toThrow(/syncGradients: this DataParallel was disposed/);
  });
});

describe("threads and devices", () => {
  it("setNumThreads sets libtorch's intra-op threads; bad values are RangeErrors/ConfigErrors; localDevice is the CPU without CUDA", () => {
    const before = dist.getNumThreads();
    try {
      dist.setNumThreads(1);
      expect(dist.getNumThreads()).toBe(1);
      expect(() => dist.setNumThreads(0)).toThrow(/n: expected an integer >= 1, got 0/);
    } finally {
      dist.setNumThreads(before);
    }
    const { cuda } = require("../../lib");
    expect(dist.localDevice({ LOCAL_RANK: "1" })).toBe(cuda.isAvailable() ? "cuda:1" : "cpu");
  });
});
