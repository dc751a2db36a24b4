/**
 * Corrupt safetensors headers and adapter configs always give a FormatError: JSON nested
 * thousands of levels deep (which made error messages overflow the stack with a RangeError), a
 * zero-element tensor whose other dimensions multiply past 2^53 (which passed the header check
 * and reached libtorch with overflowing strides), and a config file too large to be one.
 */
import * as fs from "fs";
import * as path from "path";
import { FormatError, lora, nn } from "../../lib";
import { MAX_JSON_DEPTH, excessNestingOffset } from "../../lib/io/json-depth";
import { MAX_JSON_BYTES } from "../../lib/io/regular-file";
import { loadSafetensors, loadSafetensorsSync, readSafetensorsHeaderSync } from "../../lib/io";
import { handBuilt, tempDir } from "./support/files";

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

const nested = (depth: number, open = "[", close = "]"): string => open.repeat(depth) + close.repeat(depth);

class Net extends nn.Module {
  fc = new nn.Linear(4, 4);
}

function adapterDir(configText: string): string {
  const d = path.join(dir, "adapter");
  lora.injectAdapter(new Net(), { targetModules: ["fc"], r: 2 }).saveAdapter(d);
  fs.writeFileSync(path.join(d, "adapter_config.json"), configText);
  return d;
}

describe("the nesting bound", () => {
  it("finds the first bracket past the limit, ignoring brackets inside strings", () => {
    expect(excessNestingOffset(nested(3), 3)).toBe(-1);
    expect(excessNestingOffset(nested(4), 3)).toBe(3);
    expect(excessNestingOffset(`{"a":"[[[[[[","b":[1]}`, 2)).toBe(-1);
    expect(excessNestingOffset(`{"a":"\\"[[[","b":[[1]]}`, 2)).toBe(18);
    expect(excessNestingOffset(`[{"x":[{}]}]`, 4)).toBe(-1);
    expect(excessNestingOffset(`[{"x":[{}]}]`, 3)).toBe(7);
  });
});

describe("a safetensors header", () => {
  it.each([
    ["in __metadata__", `{"__metadata__":${nested(100_000)}}`],
    ["as a tensor entry", `{"w":${nested(100_000, '{"a":', "}")}}`],
    ["as a shape", `{"w":{"dtype":"F32","shape":${nested(5000)},"data_offsets":[0,0]}}`],
  ])("nested 10^5 levels deep %s is a FormatError, sync and async", async (_where, header) => {
    const file = path.join(dir, "deep.safetensors");
    fs.writeFileSync(file, handBuilt(header));
    expect(() => loadSafetensorsSync(file)).toThrow(FormatError);
    expect(() => loadSafetensorsSync(file)).toThrow(new RegExp(`nests arrays or objects more than ${MAX_JSON_DEPTH} levels deep`));
    await expect(loadSafetensors(file)).rejects.toThrow(FormatError);
  });

  it("nested as deep as the limit still parses (then fails on its content, as a FormatError)", () => {
    const file = path.join(dir, "ok-depth.safetensors");
    fs.writeFileSync(file, handBuilt(`{"__metadata__":{"a":${nested(MAX_JSON_DEPTH - 2)}}}`));
    expect(() => readSafetensorsHeaderSync(file)).toThrow(/"__metadata__" entry "a" must be a string/);
  });

  it.each([[[0, 2 ** 52, 2 ** 52]], [[2 ** 40, 0, 2 ** 40]], [[0, 2 ** 53 - 1, 2]]])(
    "a zero-element tensor of shape %j is a FormatError (its strides would overflow)",
    (shape) => {
      const file = path.join(dir, "zero.safetensors");
      fs.writeFileSync(file, handBuilt(JSON.stringify({ w: { dtype: "F32", shape, data_offsets: [0, 0] } })));
      expect(() => readSafetensorsHeaderSync(file)).toThrow(FormatError);
      expect(() => readSafetensorsHeaderSync(file)).toThrow(/non-zero dimensions multiply to \d+, more than 2\^53 - 1/);
    },
  );

  it("a zero-element tensor with modest dimensions still loads", () => {
    const file = path.join(dir, "zero-ok.safetensors");
    fs.writeFileSync(file, handBuilt(JSON.stringify({ w: { dtype: "F32", shape: [0, 4096, 4096], data_offsets: [0, 0] } })));
    expect(loadSafetensorsSync(file).w.shape).toEqual([0, 4096, 4096]);
  });
});

describe("an adapter_config.json", () => {
  it.each([
    ["the whole file", nested(100_000)],
    ["a rank_pattern value", `{"peft_type":"LORA","r":2,"target_modules":["fc"],"rank_pattern":{"fc":${nested(100_000)}}}`],
    ["an unsupported field", `{"peft_type":"LORA","r":2,"target_modules":["fc"],"use_dora":${nested(100_000, '{"a":', "}")}}`],
  ])("nested 10^5 levels deep in %s is a FormatError, sync and async", async (_where, text) => {
    const d = adapterDir(text);
    expect(() => lora.loadAdapter(new Net(), d)).toThrow(FormatError);
    expect(() => lora.loadAdapter(new Net(), d)).toThrow(/adapter_config\.json: nests arrays or objects more than 64 levels deep/);
    await expect(lora.loadAdapterAsync(new Net(), d)).rejects.toThrow(FormatError);
    expect(() => lora.readAdapterConfig(path.join(d, "adapter_config.json"))).toThrow(FormatError);
  });

  it("larger than a config can be is a FormatError, not a RangeError or an allocation", async () => {
    const d = adapterDir("{}");
    const file = path.join(d, "adapter_config.json");
    fs.truncateSync(file, MAX_JSON_BYTES + 1); // sparse: no disk used
    expect(() => lora.loadAdapter(new Net(), d)).toThrow(new RegExp(`${MAX_JSON_BYTES + 1} bytes, more than the ${MAX_JSON_BYTES} a JSON config may have`));
    await expect(lora.loadAdapterAsync(new Net(), d)).rejects.toThrow(FormatError);
  });
});
