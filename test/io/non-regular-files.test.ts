/**
 * Only regular files are read. A FIFO in place of a weights or config file used to block the
 * load for ever (and the async load never settled); a directory gave a raw EISDIR. Every reader
 * (safetensors, state dicts, adapter weights and config, sync and async) now refuses a FIFO, a
 * symbolic link to one, a directory and a device with a FormatError naming the path and what it
 * is, before opening it. The readers run in a child process so that a hang fails the timeout.
 */
import { spawnSync } from "child_process";
import * as path from "path";

const ROOT = path.resolve(__dirname, "../..");
type Outcome = { name: string; message: string };

let results: Record<string, Outcome>;
beforeAll(() => {
  const r = spawnSync(process.execPath, ["-r", path.join(__dirname, "support/register-ts.js"), path.join(__dirname, "support/non-regular-child.ts")], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 60_000,
  });
  expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: "" });
  results = JSON.parse(r.stdout.trim().split("\n").pop()!);
}, 90_000);

const WHAT: Record<string, RegExp> = {
  fifo: /is a named pipe \(FIFO\), not a regular file/,
  "link-to-fifo": /is a named pipe \(FIFO\), not a regular file/,
  directory: /is a directory, not a regular file/,
  "char-device": /is a character device, not a regular file/,
};
const READERS = ["loadSafetensorsSync", "loadSafetensors", "readSafetensorsHeaderSync", "readSafetensorsHeader", "loadStateDictFileSync", "loadStateDictFile"];

describe.each(Object.keys(WHAT))("a %s", (kind) => {
  it.each(READERS)("%s refuses it with a FormatError naming the file", (reader) => {
    const r = results[`${kind}: ${reader}`];
    expect(r.name).toBe("FormatError");
    expect(r.message).toMatch(WHAT[kind]);
    expect(r.message).toContain(`${kind}.safetensors`);
  });

  it.each(["adapter_model.safetensors", "adapter_config.json"])("as %s: loadAdapter and loadAdapterAsync refuse it with a FormatError", (which) => {
    for (const how of ["loadAdapter", "loadAdapterAsync"]) {
      const r = results[`${kind} as ${which}: ${how}`];
      expect(r.name).toBe("FormatError");
      expect(r.message).toMatch(WHAT[kind]);
      expect(r.message).toContain(which);
    }
  });

  it("as adapter_config.json: readAdapterConfig refuses it with a FormatError", () => {
    const r = results[`${kind} as adapter_config.json: readAdapterConfig`];
    expect(r.name).toBe("FormatError");
    expect(r.message).toMatch(WHAT[kind]);
  });
});

it("regular files next to them still load", () => {
  expect(results["regular: loadSafetensorsSync"].name).toBe("returned");
  expect(results["regular: loadAdapterAsync"].name).toBe("returned");
});
