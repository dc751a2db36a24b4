import * as fs from "fs";
import * as path from "path";
import { spawn } from "child_process";
import { tensor } from "../../lib";
import {
  loadSafetensorsSync,
  loadSafetensorsMetadataSync,
  readSafetensorsHeaderSync,
  saveSafetensorsSync,
  writeFileAtomic,
  writeFileAtomicSync,
} from "../../lib/io";
import { tempDir } from "./support/files";

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

const ROOT = path.resolve(__dirname, "../..");

describe("writeFileAtomic", () => {
  test("writes strings, bytes, chunk iterables and async iterables", async () => {
    const f = path.join(dir, "out.txt");
    await writeFileAtomic(f, "héllo");
    expect(fs.readFileSync(f, "utf8")).toBe("héllo");
    writeFileAtomicSync(f, Buffer.from([1, 2, 3]));
    expect([...fs.readFileSync(f)]).toEqual([1, 2, 3]);
    writeFileAtomicSync(f, [Buffer.from("ab"), new Uint8Array([99]), Buffer.alloc(0)]);
    expect(fs.readFileSync(f, "utf8")).toBe("abc");
    async function* gen() {
      yield Buffer.from("x");
      yield Buffer.from("yz");
    }
    await writeFileAtomic(f, gen());
    expect(fs.readFileSync(f, "utf8")).toBe("xyz");
    expect(fs.readdirSync(dir)).toEqual(["out.txt"]);
  });

  test("applies the requested permission bits", () => {
    const f = path.join(dir, "secret");
    writeFileAtomicSync(f, "s", { mode: 0o600 });
    const umask = process.umask();
    expect(fs.statSync(f).mode & 0o777).toBe(0o600 & ~umask);
  });

  test.each([
    ["sync", (f: string, d: unknown) => Promise.resolve().then(() => writeFileAtomicSync(f, d as never))],
    ["async", (f: string, d: unknown) => writeFileAtomic(f, d as never)],
  ])("%s: a failure mid-write leaves the old file and no temporary file", async (_kind, write) => {
    const f = path.join(dir, "keep.bin");
    fs.writeFileSync(f, "old contents");
    function* failing() {
      yield Buffer.alloc(100_000, 1);
      throw new Error("source broke");
    }
    await expect(write(f, failing())).rejects.toThrow("source broke");
    await expect(write(f, [Buffer.from("a"), "not bytes"])).rejects.toThrow(/data: chunk 1 is the string "not bytes"; expected a Uint8Array/);
    await expect(write(f, 42)).rejects.toThrow(/data: expected a string, a Uint8Array or an iterable/);
    await expect(write(path.join(dir, "missing", "x.bin"), "data")).rejects.toThrow(/ENOENT/);
    fs.mkdirSync(path.join(dir, "adir"));
    await expect(write(path.join(dir, "adir"), "data")).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST|EPERM/);
    expect(fs.readFileSync(f, "utf8")).toBe("old contents");
    expect(fs.readdirSync(dir).sort()).toEqual(["adir", "keep.bin"]);
  });

  test("argument errors name the argument", () => {
    expect(() => writeFileAtomicSync("", "x")).toThrow(/path: expected a non-empty string, got the string ""/);
    expect(() => writeFileAtomicSync(path.join(dir, "f"), "x", { mode: 0o70000 })).toThrow(/options.mode: expected permission bits/);
    async function* agen() {
      yield Buffer.from("x");
    }
    expect(() => writeFileAtomicSync(path.join(dir, "f"), agen() as never)).toThrow(/async iterable needs writeFileAtomic/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe("a save killed mid-write", () => {
  test("SIGKILL during a large save leaves the previous file intact and loadable", async () => {
    const file = path.join(dir, "model.safetensors");
    saveSafetensorsSync(file, { "layer.000.weight": tensor([1, 2, 3]), step: tensor([7], { dtype: "int64" }) }, { run: "old" });
    const before = fs.readFileSync(file);

    // 24 tensors of 4 MiB; the child blocks when the 13th is requested, after 12 were written.
    const child = spawn(
      process.execPath,
      ["-r", path.join(__dirname, "support/register-ts.js"), path.join(__dirname, "support/killed-save-child.ts"), file, "24", "13"],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on("exit", (code, signal) => resolve({ code, signal })),
    );
    const said = await new Promise<string>((resolve) => {
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
        if (out.includes("\n")) resolve(out.trim());
      });
      child.on("exit", () => resolve(out.trim() || `exited early: ${stderr}`));
    });
    expect(said).toBe("halfway");

    // The half-written temporary file sits next to the target: 12 tensors of 4 MiB plus the header.
    const temps = fs.readdirSync(dir).filter((n) => n.startsWith(".model.safetensors.tmp-"));
    expect(temps).toHaveLength(1);
    const tempSize = fs.statSync(path.join(dir, temps[0])).size;
    expect(tempSize).toBeGreaterThan(12 * 4 * 1024 * 1024);
    expect(tempSize).toBeLessThan(24 * 4 * 1024 * 1024);

    child.kill("SIGKILL");
    expect(await exited).toEqual({ code: null, signal: "SIGKILL" });

    expect(fs.readFileSync(file).equals(before)).toBe(true);
    const loaded = loadSafetensorsSync(file);
    expect(loaded["layer.000.weight"].toList()).toEqual([1, 2, 3]);
    expect(loadSafetensorsMetadataSync(file)).toEqual({ run: "old" });
    // The stray temporary file is not a valid file, and a later save replaces the target normally.
    expect(() => readSafetensorsHeaderSync(path.join(dir, temps[0]))).toThrow(/truncated|past the end/);
    saveSafetensorsSync(file, { a: tensor([9]) });
    expect(loadSafetensorsSync(file).a.toList()).toEqual([9]);
  });
});
