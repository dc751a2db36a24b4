/**
 * AdapterRegistry's calls refuse bad arguments by name and change nothing (`use`, `useAsync`,
 * `acquire`, `release`), skip `"__base__"`, hold an adapter while a batch's thenable is pending,
 * and, for asynchronous loads: name the loads in flight, share one load (and its failure) per
 * adapter, serve a loaded adapter without waiting for other loads, and keep the recency order.
 */
import * as fs from "fs";
import * as path from "path";
import { StateError, lora, manualSeed } from "../../lib";
import { EmbFc } from "../helpers/lora-reference";
import { makeTempDir } from "../helpers/temp";

const root = makeTempDir("tl-registry-calls-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** r = 2 on EmbFc in fp32: emb A (2, 10) + B (4, 2), fc A (2, 4) + B (6, 2) = 48 floats. */
const BYTES = (2 * 10 + 4 * 2 + 2 * 4 + 6 * 2) * 4;
const CONFIG = { r: 2, loraAlpha: 4, targetModules: ["emb", "fc"] };

beforeAll(() => {
  for (const name of ["a", "b", "c"]) {
    manualSeed(3);
    lora.injectAdapter(new EmbFc(), CONFIG).saveAdapter(path.join(root, name));
  }
});

function base(): EmbFc {
  manualSeed(7);
  return new EmbFc();
}

/** What `fn` throws (synchronously), checked to be an Error. */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(Error);
    return e as Error;
  }
  throw new Error("expected a throw");
}

/** What `fn` throws, or undefined: for checks that must wait until loads in flight settle. */
function caught(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  return undefined as never;
}

function expectError(err: Error, kind: new (...args: never[]) => Error, message: string): void {
  expect(err).toBeInstanceOf(kind);
  expect(err.message).toBe(message);
}

describe("argument checks", () => {
  test("use and useAsync refuse an fn that is not a function, before loading anything", async () => {
    const reg = new lora.AdapterRegistry(base(), root);
    expectError(
      thrown(() => reg.use(["a"], "x" as never)),
      TypeError,
      'fn: expected a function, got the string "x"',
    );
    const rejected = await reg.useAsync(["a"], 5 as never).catch((e: Error) => e);
    expectError(rejected as Error, TypeError, "fn: expected a function, got 5");
    expect(reg.loaded).toEqual([]);
    expect(reg.model).toBeNull();
  });

  test("names that are not an array are refused by every call, and fn is not run", async () => {
    const reg = new lora.AdapterRegistry(base(), root);
    const fn = jest.fn();
    expectError(
      thrown(() => reg.acquire("a" as never)),
      TypeError,
      'names: expected an array of adapter names, got the string "a"',
    );
    expectError(
      thrown(() => reg.use("a" as never, fn)),
      TypeError,
      'names: expected an array of adapter names, got the string "a"',
    );
    const rejected = await reg.useAsync(null as never, fn).catch((e: Error) => e);
    expectError(rejected as Error, TypeError, "names: expected an array of adapter names, got null");
    expect(fn).not.toHaveBeenCalled();
    expect(reg.loaded).toEqual([]);
  });

  test("an invalid adapter name is refused as an entry of names", () => {
    const reg = new lora.AdapterRegistry(base(), root);
    expectError(
      thrown(() => reg.acquire(["a", "../b"])),
      TypeError,
      'names: expected a non-empty name without dots, slashes, backslashes or NUL characters, got the string "../b"',
    );
    expect(reg.loaded).toEqual([]);
  });

  test("release of an adapter no batch holds names it, and releases nothing else", () => {
    const reg = new lora.AdapterRegistry(base(), root, { memoryBudget: 0 });
    reg.acquire(["a"]);
    expectError(
      thrown(() => reg.release(["a", "b"])),
      StateError,
      'release: adapter the string "b" is not held by any batch',
    );
    expect(reg.loaded).toEqual(["a"]); // still held: over the budget of 0, yet not evicted
    reg.release(["a"]);
    expect(reg.loaded).toEqual([]);
    expectError(
      thrown(() => reg.release(["a"])),
      StateError,
      'release: adapter the string "a" is not held by any batch',
    );
  });

  test("an adapter the model already holds, which the registry did not load, is refused and kept", () => {
    manualSeed(3);
    const lm = lora.injectAdapter(base(), CONFIG, "a");
    const reg = new lora.AdapterRegistry(lm, root);
    expectError(
      thrown(() => reg.acquire(["a"])),
      StateError,
      'names: the model already holds an adapter the string "a" that this registry did not load',
    );
    expect(reg.loaded).toEqual([]);
    expect(lm.adapterNames).toEqual(["a"]);
    // Another adapter from the folder is added beside it.
    reg.use(["b"], (m) => expect(m!.adapterNames.sort()).toEqual(["a", "b"]));
    expect(reg.loaded).toEqual(["b"]);
  });

  test("a name not in the folder: the message lists up to 20 adapters, then only counts them", () => {
    const many = makeTempDir("tl-registry-many-");
    try {
      const reg = new lora.AdapterRegistry(base(), many);
      const refusal = () => thrown(() => reg.acquire(["zz"]));
      expectError(refusal(), RangeError, `names: no adapter the string "zz" in ${many} (adapters: none)`);
      const names = Array.from({ length: 21 }, (_, i) => `n${String(i).padStart(2, "0")}`);
      for (const n of names.slice(0, 20)) {
        fs.mkdirSync(path.join(many, n));
        fs.writeFileSync(path.join(many, n, "adapter_config.json"), "{}");
      }
      expectError(refusal(), RangeError, `names: no adapter the string "zz" in ${many} (adapters: ${names.slice(0, 20).join(", ")})`);
      fs.mkdirSync(path.join(many, names[20]));
      fs.writeFileSync(path.join(many, names[20], "adapter_config.json"), "{}");
      expectError(refusal(), RangeError, `names: no adapter the string "zz" in ${many} (adapters: ${names.slice(0, 20).join(", ")}, ... (21 in all))`);
    } finally {
      fs.rmSync(many, { recursive: true, force: true });
    }
  });
});

describe('"__base__" entries', () => {
  test("are skipped by use and useAsync: nothing is loaded for them", async () => {
    const reg = new lora.AdapterRegistry(base(), root, { memoryBudget: 0 });
    expect(reg.use(["__base__"], (m) => m)).toBeNull();
    expect(await reg.useAsync(["__base__"], (m) => m)).toBeNull();
    expect(reg.loaded).toEqual([]);
    expect(reg.use(["__base__", "a"], (m) => [...reg.loaded, ...m!.adapterNames])).toEqual(["a", "a"]);
    expect(await reg.useAsync(["b", "__base__"], () => reg.loaded)).toEqual(["b"]);
    // Both batches released what they held: the budget of 0 evicted it.
    expect(reg.loaded).toEqual([]);
  });
});

describe("a batch that returns a thenable (any object or function with a then method)", () => {
  test("holds its adapters until the thenable settles", async () => {
    const reg = new lora.AdapterRegistry(base(), root, { memoryBudget: 0 });
    let settle!: (v: number) => void;
    const thenable = { then: (onFulfilled: (v: number) => void) => void (settle = onFulfilled) };
    const out = reg.use(["a"], () => thenable) as unknown as Promise<number>;
    await new Promise((r) => setImmediate(r));
    expect(reg.loaded).toEqual(["a"]); // held, over the budget of 0
    settle(42);
    expect(await out).toBe(42);
    expect(reg.loaded).toEqual([]);
  });

  test("a thenable may be a function too", async () => {
    const reg = new lora.AdapterRegistry(base(), root, { memoryBudget: 0 });
    let settle!: (v: string) => void;
    const thenable = Object.assign(() => undefined, { then: (onFulfilled: (v: string) => void) => void (settle = onFulfilled) });
    const out = reg.use(["b"], () => thenable) as unknown as Promise<string>;
    await new Promise((r) => setImmediate(r));
    expect(reg.loaded).toEqual(["b"]);
    settle("done");
    expect(await out).toBe("done");
    expect(reg.loaded).toEqual([]);
  });
});

describe("asynchronous loads", () => {
  test("a synchronous acquire meanwhile is refused, naming every load in flight", async () => {
    const reg = new lora.AdapterRegistry(base(), root);
    const loads = [reg.acquireAsync(["a"]), reg.acquireAsync(["b"])];
    const refused = caught(() => reg.acquire(["c"]));
    await Promise.all(loads); // before any check can fail, so that no load outlives the test
    expectError(refused, StateError, "acquire: asynchronous loads are in flight (a, b); use acquireAsync while they run");
    expect(reg.loaded).toEqual(["a", "b"]);
    reg.release(["a", "b"]);
  });

  test("concurrent requests for one adapter share its load, and so its failure", async () => {
    const other = makeTempDir("tl-registry-shared-");
    try {
      fs.cpSync(path.join(root, "a"), path.join(other, "broken"), { recursive: true });
      fs.writeFileSync(path.join(other, "broken", "adapter_model.safetensors"), "not safetensors");
      const reg = new lora.AdapterRegistry(base(), other);
      const [first, second] = await Promise.allSettled([reg.acquireAsync(["broken"]), reg.acquireAsync(["broken"])]);
      expect(first.status).toBe("rejected");
      expect(second.status).toBe("rejected");
      const error = (first as PromiseRejectedResult).reason as Error;
      expect(error.message).toMatch(/adapter_model\.safetensors/);
      // One load, read once: both requests got its one error.
      expect((second as PromiseRejectedResult).reason).toBe(error);
      expect(reg.loaded).toEqual([]);
      expect(() => reg.release(["broken"])).toThrow(/is not held by any batch/);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  test("an adapter already loaded is served without waiting for another adapter's load", async () => {
    const reg = new lora.AdapterRegistry(base(), root);
    await reg.acquireAsync(["a"]);
    reg.release(["a"]);
    const settled: string[] = [];
    const loadB = reg.acquireAsync(["b"]).then(() => settled.push("b"));
    const useA = reg.acquireAsync(["a"]).then(() => settled.push("a"));
    const refused = caught(() => reg.acquire(["c"]));
    await Promise.all([loadB, useA]);
    // Only b was loading; a was not queued behind it.
    expectError(refused, StateError, "acquire: asynchronous loads are in flight (b); use acquireAsync while they run");
    expect(settled).toEqual(["a", "b"]);
    reg.release(["a", "b"]);
  });

  test("acquireAsync makes its adapters the most recently used, so eviction spares them", async () => {
    const reg = new lora.AdapterRegistry(base(), root, { memoryBudget: 2 * BYTES });
    for (const names of [["a"], ["b"], ["a"]]) {
      await reg.acquireAsync(names);
      reg.release(names);
    }
    expect(reg.loaded).toEqual(["b", "a"]);
    await reg.acquireAsync(["c"]);
    reg.release(["c"]);
    expect(reg.loaded).toEqual(["a", "c"]);
    expect(reg.memory()).toEqual({ a: BYTES, c: BYTES });
  });
});
