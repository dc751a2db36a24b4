/**
 * An adapter folder is replaced as a whole: a save that fails at any step (writing the files, or
 * the rename that puts the new folder in place) leaves the old adapter byte for byte and no
 * temporary folder; what the folder held besides the saved adapter (other adapters' subfolders,
 * the user's files) is kept. (Crashes are in test/reliability/killed-adapter-save.test.ts.)
 */
// The module object itself (not a namespace copy), so that jest.spyOn can replace its functions.
import fs = require("fs");
import * as path from "path";
import { lora } from "../../lib";
import { cleanupTmp, randomizeAdapter, seededModel, tmpDir } from "./helpers";

afterEach(() => {
  jest.restoreAllMocks();
  cleanupTmp();
});

function adapted(seed: number): lora.LoraModel {
  const m = lora.injectAdapter(seededModel(seed), { targetModules: ["emb", "fc1", "head"], r: 2, loraAlpha: 4 });
  m.addAdapter("other", { targetModules: ["fc1"], r: 2, loraAlpha: 8 });
  randomizeAdapter(m);
  randomizeAdapter(m, "other");
  return m;
}

/** Every file under `dir` (relative path → bytes). */
function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name), path.join(rel, e.name));
      else out[path.join(rel, e.name)] = fs.readFileSync(path.join(d, e.name)).toString("base64");
    }
  };
  walk(dir, "");
  return out;
}

const saves = [
  ["saveAdapter", (m: lora.LoraModel, d: string) => Promise.resolve().then(() => m.saveAdapter(d))],
  ["saveAdapterAsync", (m: lora.LoraModel, d: string) => m.saveAdapterAsync(d)],
] as const;

describe.each(saves)("%s", (name, save) => {
  const sync = name === "saveAdapter";
  it("a failure at the rename that switches the folders leaves the old adapter intact, and no temporary folder", async () => {
    const parent = tmpDir();
    const dir = path.join(parent, "adapter");
    adapted(1).saveAdapter(dir);
    const before = contents(dir);
    const rename = fs.renameSync;
    jest.spyOn(fs, "renameSync").mockImplementation((from, to) => {
      if (path.resolve(String(to)) === path.resolve(dir) && /\.tmp-/.test(String(from)))
        throw Object.assign(new Error("EIO: injected failure"), { code: "EIO" });
      return rename(from, to);
    });
    await expect(save(adapted(2), dir)).rejects.toThrow("injected failure");
    expect(contents(dir)).toEqual(before);
    expect(fs.readdirSync(parent)).toEqual(["adapter"]);
  });

  it("a failure while the new files are written leaves the old adapter intact", async () => {
    const parent = tmpDir();
    const dir = path.join(parent, "adapter");
    adapted(1).saveAdapter(dir);
    const before = contents(dir);
    const rename = fs.renameSync;
    const renameAsync = fs.promises.rename;
    const failConfig = (to: unknown): void => {
      if (String(to).endsWith("adapter_config.json")) throw Object.assign(new Error("ENOSPC: injected failure"), { code: "ENOSPC" });
    };
    jest.spyOn(fs, "renameSync").mockImplementation((from, to) => (failConfig(to), rename(from, to)));
    jest.spyOn(fs.promises, "rename").mockImplementation(async (from, to) => (failConfig(to), renameAsync(from, to)));
    await expect(save(adapted(2), dir)).rejects.toThrow("injected failure");
    expect(contents(dir)).toEqual(before);
    expect(fs.readdirSync(parent)).toEqual(["adapter"]);
  });

  it("keeps the folder's other entries: another adapter's subfolder and the user's files", async () => {
    const parent = tmpDir();
    const dir = path.join(parent, "adapter");
    adapted(1).saveAdapter(dir);
    fs.writeFileSync(path.join(dir, "README.md"), "model card");
    fs.mkdirSync(path.join(dir, "notes"));
    fs.writeFileSync(path.join(dir, "notes", "a.txt"), "a");
    const other = contents(path.join(dir, "other"));
    const m = adapted(2);
    await (sync ? Promise.resolve(m.saveAdapter(dir, { adapterName: "default" })) : m.saveAdapterAsync(dir, { adapterName: "default" }));
    expect(fs.readFileSync(path.join(dir, "README.md"), "utf8")).toBe("model card");
    expect(fs.readFileSync(path.join(dir, "notes", "a.txt"), "utf8")).toBe("a");
    expect(contents(path.join(dir, "other"))).toEqual(other);
    // The default adapter is the new one.
    const reloaded = lora.loadAdapter(seededModel(1), dir);
    const [A] = reloaded.loraLayers()[0][1].factors("default");
    const [A2] = m.loraLayers()[0][1].factors("default");
    expect(A.toBytes().equals(A2.toBytes())).toBe(true);
    expect(fs.readdirSync(parent)).toEqual(["adapter"]);
  });

  it("a folder reached through a symbolic link is replaced where it is, and the link stays a link", async () => {
    const parent = tmpDir();
    const real = path.join(parent, "real");
    adapted(1).saveAdapter(real);
    const link = path.join(parent, "link");
    fs.symlinkSync(real, link);
    await save(adapted(2), link);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.readdirSync(parent).sort()).toEqual(["link", "real"]);
    expect(lora.loadAdapter(seededModel(1), link).adapterNames).toEqual(["default"]);
  });
});

it("a new folder gets the usual permissions, and a replaced one keeps its own", () => {
  const parent = tmpDir();
  const dir = path.join(parent, "adapter");
  adapted(1).saveAdapter(dir);
  expect(fs.statSync(dir).mode & 0o777).toBe(0o777 & ~process.umask());
  fs.chmodSync(dir, 0o750);
  adapted(2).saveAdapter(dir);
  expect(fs.statSync(dir).mode & 0o777).toBe(0o750);
  // Even a folder without write permission for its owner is replaced (its parent is writable).
  fs.chmodSync(dir, 0o555);
  adapted(3).saveAdapter(dir);
  expect(fs.statSync(dir).mode & 0o777).toBe(0o555);
  fs.chmodSync(dir, 0o755);
});

it("a process working inside the replaced folder is moved into the new one", () => {
  const parent = tmpDir();
  const dir = path.join(parent, "adapter");
  adapted(1).saveAdapter(dir);
  fs.mkdirSync(path.join(dir, "logs"));
  const cwd = process.cwd();
  try {
    process.chdir(path.join(dir, "logs"));
    adapted(2).saveAdapter(".."); // the adapter folder, relative to the working directory
    expect(process.cwd()).toBe(fs.realpathSync(path.join(dir, "logs")));
    expect(fs.existsSync("../adapter_config.json")).toBe(true);
  } finally {
    process.chdir(cwd);
  }
  expect(fs.readdirSync(parent)).toEqual(["adapter"]);
});
