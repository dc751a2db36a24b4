/**
 * What saveSafetensors refuses before writing anything, with the exact message: containers that
 * are not records or Maps, a non-string name, names and metadata that UTF-8 cannot encode; and a
 * null metadata, which means none.
 */
import * as fs from "fs";
import * as path from "path";
import { tensor } from "../../lib";
import { loadSafetensorsMetadataSync, loadSafetensorsSync, saveSafetensors, saveSafetensorsSync } from "../../lib/io";
import { tempDir } from "./support/files";

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

const t = () => tensor([1, 2]);

/** Both twins refuse with a TypeError whose message is `message`, and leave the folder empty. */
async function refused(tensors: unknown, metadata: unknown, message: string): Promise<void> {
  const file = path.join(dir, "x.safetensors");
  expect(() => saveSafetensorsSync(file, tensors as never, metadata as never)).toThrow(new TypeError(message));
  await expect(saveSafetensors(file, tensors as never, metadata as never)).rejects.toThrow(new TypeError(message));
  expect(fs.readdirSync(dir)).toEqual([]);
}

describe("saveSafetensors refuses, naming the argument", () => {
  test.each([
    ["null", null, "null"],
    ["a number", 5, "5"],
    ["an array", [], "an array of length 0"],
    ["a Tensor", tensor([1]), "a Tensor"],
  ])("tensors that are %s", async (_name, tensors, shown) => {
    await refused(tensors, undefined, `tensors: expected a record or Map from names to Tensors, got ${shown}`);
  });

  test("a Map with a name that is not a string", async () => {
    await refused(new Map([[1, t()]]), undefined, "tensors: names must be strings, got 1");
  });

  test("a name, a metadata key or a metadata value holding a lone surrogate", async () => {
    await refused({ "w\uD800": t() }, undefined, 'tensors: name: "w\\ud800" contains a lone UTF-16 surrogate');
    await refused({ w: t() }, { "k\uDC00": "v" }, 'metadata: key: "k\\udc00" contains a lone UTF-16 surrogate');
    await refused({ w: t() }, { k: "v\uD800" }, 'metadata["k"]: "v\\ud800" contains a lone UTF-16 surrogate');
  });
});

test("null metadata means none", () => {
  const file = path.join(dir, "x.safetensors");
  saveSafetensorsSync(file, { w: t() }, null);
  expect(loadSafetensorsMetadataSync(file)).toBeNull();
  expect(loadSafetensorsSync(file).w.toList()).toEqual([1, 2]);
});
