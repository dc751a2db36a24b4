/**
 * One body, two runners: runSync takes every step's synchronous form, runAsync awaits its
 * asynchronous form, and a step's error reaches the body at its yield in both.
 */
import { TwinBody, runAsync, runSync, runThenCleanUp, step } from "../../lib/sync-or-async";

/** Records which form of each step ran; step "bad" fails, and the body recovers from it. */
function* body(log: string[]): TwinBody<string> {
  const a = yield* step(
    () => (log.push("sync a"), 2),
    async () => (log.push("async a"), 2),
  );
  let recovered = "";
  try {
    yield* step(
      () => {
        throw new RangeError("bad sync");
      },
      () => Promise.reject(new RangeError("bad async")),
    );
  } catch (err) {
    recovered = (err as Error).message;
  }
  const b = yield* step(
    () => (log.push("sync b"), a * 10),
    async () => (log.push("async b"), a * 10),
  );
  return `${b} after ${recovered}`;
}

test("runSync runs only the synchronous forms, in order, and the body catches a failed step", () => {
  const log: string[] = [];
  expect(runSync(body(log))).toBe("20 after bad sync");
  expect(log).toEqual(["sync a", "sync b"]);
});

test("runAsync awaits only the asynchronous forms, in order, and the body catches a rejected step", async () => {
  const log: string[] = [];
  const result = runAsync(body(log));
  expect(log).toEqual(["async a"]); // the first step starts at once; the rest wait for it
  await expect(result).resolves.toBe("20 after bad async");
  expect(log).toEqual(["async a", "async b"]);
});

test("an error the body does not catch is thrown by runSync and rejects runAsync", async () => {
  function* failing(): TwinBody<number> {
    yield* step(
      () => {
        throw new TypeError("sync failure");
      },
      () => Promise.reject(new TypeError("async failure")),
    );
    return 1;
  }
  expect(() => runSync(failing())).toThrow("sync failure");
  await expect(runAsync(failing())).rejects.toThrow("async failure");
});

test("a check before the first step throws from runSync and rejects (not throws) from runAsync", async () => {
  const log: string[] = [];
  function* checked(value: number): TwinBody<number> {
    if (value < 0) throw new RangeError("refused before any step");
    return yield* step(
      () => (log.push("sync"), value),
      async () => (log.push("async"), value),
    );
  }
  expect(() => runSync(checked(-1))).toThrow("refused before any step");
  const pending = runAsync(checked(-1));
  await expect(pending).rejects.toThrow("refused before any step");
  expect(log).toEqual([]);
});

describe("runThenCleanUp", () => {
  test("cleans up at once after a plain value or a throw", () => {
    const log: string[] = [];
    expect(
      runThenCleanUp(
        () => (log.push("fn"), 3),
        () => log.push("clean"),
      ),
    ).toBe(3);
    expect(() =>
      runThenCleanUp(
        () => {
          throw new RangeError("fn failed");
        },
        () => log.push("clean after throw"),
      ),
    ).toThrow("fn failed");
    expect(log).toEqual(["fn", "clean", "clean after throw"]);
  });

  test("cleans up only when a returned promise settles, which then settles as fn's did", async () => {
    const log: string[] = [];
    let resolve!: (v: number) => void;
    const pending = runThenCleanUp(
      () => new Promise<number>((r) => (resolve = r)),
      () => log.push("clean"),
    );
    await Promise.resolve();
    expect(log).toEqual([]);
    resolve(7);
    await expect(pending).resolves.toBe(7);
    expect(log).toEqual(["clean"]);
    await expect(
      runThenCleanUp(
        () => Promise.reject(new TypeError("late")),
        () => log.push("clean again"),
      ),
    ).rejects.toThrow("late");
    expect(log).toEqual(["clean", "clean again"]);
  });
});
