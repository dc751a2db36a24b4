/**
 * Saving into a folder that does not exist says so, naming the folder, before anything is
 * written, instead of an ENOENT about the temporary file the writer would have created.
 */
import * as fs from "fs";
import * as path from "path";
import { tensor } from "../../lib";
import { saveSafetensors, saveStateDict, saveStateDictSync, writeFileAtomicSync } from "../../lib/io";
import { tempDir } from "./support/files";

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

describe.each([
  ["saveStateDictSync", (file: string) => Promise.resolve().then(() => saveStateDictSync(file, { w: tensor([1, 2]) }))],
  ["saveStateDict", (file: string) => saveStateDict(file, { w: tensor([1, 2]) })],
  ["saveSafetensors", (file: string) => saveSafetensors(file, { w: tensor([1, 2]) })],
  ["writeFileAtomicSync", (file: string) => Promise.resolve().then(() => writeFileAtomicSync(file, "x"))],
])("%s", (_name, save) => {
  it("into a missing folder says that the folder does not exist, and creates nothing", async () => {
    const missing = path.join(dir, "no", "such");
    const file = path.join(missing, "model.safetensors");
    const err = await save(file).then(
      () => null,
      (e: NodeJS.ErrnoException) => e,
    );
    expect(err).not.toBeNull();
    expect(err!.message).toBe(`ENOENT: ${file}: the folder ${missing} does not exist; create it first`);
    expect(err!.code).toBe("ENOENT");
    expect(err!.message).not.toMatch(/\.tmp-/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it("under a file instead of a folder says that it is not a folder", async () => {
    fs.writeFileSync(path.join(dir, "plain"), "x");
    await expect(save(path.join(dir, "plain", "model.safetensors"))).rejects.toThrow(`${path.join(dir, "plain")} is not a folder`);
  });
});
