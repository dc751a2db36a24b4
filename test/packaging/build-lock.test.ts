/** scripts/lib/build-lock.js: one native build at a time per package folder. */
import * as fs from "fs";
import * as path from "path";
import { ROOT } from "../helpers/packaging";
import { makeTempDir } from "../helpers/temp";

const { withBuildLock, isAlive } = require(path.join(ROOT, "scripts/lib/build-lock.js"));

let root: string;
beforeEach(() => {
  root = makeTempDir("torch-lora-lock-");
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

/** A pid that no process has: one past the kernel's limit. */
const deadPid = Number(fs.readFileSync("/proc/sys/kernel/pid_max", "utf8")) + 1;

test("runs the function holding the lock, returns its value and releases the lock, also when it throws", () => {
  const lock = path.join(root, "build.lock");
  expect(withBuildLock(root, () => [fs.existsSync(lock), fs.readFileSync(path.join(lock, "pid"), "utf8")])).toEqual([true, String(process.pid)]);
  expect(fs.existsSync(lock)).toBe(false);
  expect(() =>
    withBuildLock(root, () => {
      throw new Error("build failed");
    }),
  ).toThrow("build failed");
  expect(fs.existsSync(lock)).toBe(false);
});

test("a lock left by a process that no longer exists is taken over", () => {
  expect(isAlive(deadPid)).toBe(false);
  fs.mkdirSync(path.join(root, "build.lock"));
  fs.writeFileSync(path.join(root, "build.lock/pid"), String(deadPid));
  expect(withBuildLock(root, () => "built")).toBe("built");
});

test("a lock a live process holds is waited for, and past the timeout it is an error naming the folder", () => {
  expect(isAlive(process.ppid)).toBe(true);
  fs.mkdirSync(path.join(root, "build.lock"));
  fs.writeFileSync(path.join(root, "build.lock/pid"), String(process.ppid));
  const waited: string[] = [];
  let ran = false;
  expect(() => withBuildLock(root, () => (ran = true), { timeoutMs: 1200, log: (m: string) => waited.push(m) })).toThrow(
    `another build of ${root} still holds ${path.join(root, "build.lock")} after 1 s of waiting`,
  );
  expect(ran).toBe(false);
  expect(waited).toEqual([`waiting for the build that process ${process.ppid} is running in ${root}`]);
  // The holder's lock is left alone.
  expect(fs.readFileSync(path.join(root, "build.lock/pid"), "utf8")).toBe(String(process.ppid));
});
