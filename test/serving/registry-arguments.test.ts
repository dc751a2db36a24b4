/** AdapterRegistry's constructor refuses each bad argument by name, and accepts a budget of 0; available() is sorted. */
import * as fs from "fs";
import * as path from "path";
import { lora, nn } from "../../lib";
import { makeTempDir } from "../helpers/temp";

const root = makeTempDir("tl-registry-args-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const model = () => new nn.Linear(2, 2);

describe("AdapterRegistry arguments", () => {
  test.each([
    [
      "a model that is not a Module",
      () => new lora.AdapterRegistry({} as never, root),
      new TypeError("model: expected an nn.Module or a LoraModel, got an object"),
    ],
    ["a root that is not a string", () => new lora.AdapterRegistry(model(), 5 as never), new TypeError("root: expected a folder of adapter folders, got 5")],
    [
      "a root that does not exist",
      () => new lora.AdapterRegistry(model(), path.join(root, "missing")),
      new TypeError(`root: expected a folder of adapter folders, got the string ${JSON.stringify(path.join(root, "missing"))}`),
    ],
    ["null options", () => new lora.AdapterRegistry(model(), root, null as never), new TypeError("options: expected an options object, got null")],
    ["options that are a number", () => new lora.AdapterRegistry(model(), root, 5 as never), new TypeError("options: expected an options object, got 5")],
    [
      "a negative budget",
      () => new lora.AdapterRegistry(model(), root, { memoryBudget: -1 }),
      new RangeError("memoryBudget: expected a number of bytes >= 0, got -1"),
    ],
    [
      "a NaN budget",
      () => new lora.AdapterRegistry(model(), root, { memoryBudget: NaN }),
      new RangeError("memoryBudget: expected a number of bytes >= 0, got NaN"),
    ],
    [
      "a budget as a string",
      () => new lora.AdapterRegistry(model(), root, { memoryBudget: "1" as never }),
      new RangeError('memoryBudget: expected a number of bytes >= 0, got the string "1"'),
    ],
  ])("%s", (_name, make, error) => {
    let thrown: unknown;
    try {
      make();
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(error.constructor);
    expect((thrown as Error).message).toBe(error.message);
  });

  test("a root that is a file is refused; a budget of 0 is accepted", () => {
    const file = path.join(root, "file");
    fs.writeFileSync(file, "");
    expect(() => new lora.AdapterRegistry(model(), file)).toThrow(/^root: expected a folder of adapter folders/);
    expect(new lora.AdapterRegistry(model(), root, { memoryBudget: 0 }).memoryBudget).toBe(0);
  });

  test("a root given as a Buffer naming an existing folder is refused: root must be a string", () => {
    expect(() => new lora.AdapterRegistry(model(), Buffer.from(root) as never)).toThrow(
      new TypeError("root: expected a folder of adapter folders, got a Buffer"),
    );
  });

  test("available() lists the adapter folders in JavaScript string order", () => {
    // The folder listing comes in UTF-8 byte order, where U+FF21 comes before U+1F600; in UTF-16
    // code units (JavaScript's order) the surrogate pair of U+1F600 comes first.
    const names = ["b", "\uFF21", "\u{1F600}", "a"];
    const dir = fs.mkdtempSync(path.join(root, "sorted-"));
    for (const n of names) {
      fs.mkdirSync(path.join(dir, n));
      fs.writeFileSync(path.join(dir, n, "adapter_config.json"), "{}");
    }
    fs.mkdirSync(path.join(dir, "no-config"));
    expect(new lora.AdapterRegistry(model(), dir).available()).toEqual(["a", "b", "\u{1F600}", "\uFF21"]);
  });
});
