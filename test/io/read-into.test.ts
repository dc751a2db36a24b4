/**
 * readIntoTensor: a checkpoint tensor's bytes read straight into a tensor's memory, when they can
 * go there as they are; and fromPretrained taking that path for every CPU parameter of the
 * file's dtype while giving the values the file holds.
 */
import * as fs from "fs";
import * as path from "path";
import { io, manualSeed, models, tensor, zeros } from "../../lib";
import { native } from "../../lib/binding";
import { readIntoTensor } from "../../lib/io/read-into";
import { handleOf } from "../../lib/tensor";
import { tempDir } from "../helpers/temp";

const { dir, cleanup } = tempDir("tl-read-into-");
afterAll(cleanup);

/** A file of 7 junk bytes, then the float32 values 0.5, 1.5, ..., 11.5 (little-endian). */
function valuesFile(): string {
  const file = path.join(dir, "values.bin");
  const values = Buffer.alloc(7 + 12 * 4);
  for (let i = 0; i < 12; i++) values.writeFloatLE(i + 0.5, 7 + 4 * i);
  fs.writeFileSync(file, values);
  return file;
}

test("fills a contiguous CPU tensor of the file's dtype from the position given", async () => {
  const handle = await fs.promises.open(valuesFile(), "r");
  try {
    const t = zeros([3, 4]);
    const version = native.version(handleOf(t));
    expect(await readIntoTensor(handle, 7, t, "float32")).toBe(true);
    expect(t.toList()).toEqual(Array.from({ length: 12 }, (_, i) => i + 0.5));
    // a write as an in-place op's: caches keyed by the version (the decoding head) see it
    expect(native.version(handleOf(t))).toBeGreaterThan(version);
    const tail = zeros([2]);
    expect(await readIntoTensor(handle, 7 + 40, tail, "float32")).toBe(true);
    expect(tail.toList()).toEqual([10.5, 11.5]);
    const none = zeros([0]);
    expect(await readIntoTensor(handle, 0, none, "float32")).toBe(true);
  } finally {
    await handle.close();
  }
});

test("another dtype, or a tensor that is not contiguous, is left untouched and reported as not read", async () => {
  const handle = await fs.promises.open(valuesFile(), "r");
  try {
    const wide = zeros([12], { dtype: "float64" });
    expect(await readIntoTensor(handle, 7, wide, "float32")).toBe(false);
    const base = tensor([
      [1, 2],
      [3, 4],
    ]);
    const transposed = base.transpose(0, 1);
    expect(await readIntoTensor(handle, 7, transposed, "float32")).toBe(false);
    expect([wide.toList(), base.toList()]).toEqual([Array(12).fill(0), [1, 2, 3, 4]]);
  } finally {
    await handle.close();
  }
});

test("a file that ends before the tensor is full is an error saying how far it got", async () => {
  const handle = await fs.promises.open(valuesFile(), "r");
  try {
    await expect(readIntoTensor(handle, 7 + 8, zeros([12]), "float32")).rejects.toThrow("readIntoTensor: the file ended after 40 of 48 bytes");
  } finally {
    await handle.close();
  }
});

test("fromPretrained reads every float32 parameter of a float32 checkpoint straight into the model, with the file's values", async () => {
  manualSeed(4);
  const written = new models.GPT2LMHeadModel({ model_type: "gpt2", vocab_size: 40, n_positions: 16, n_embd: 16, n_layer: 2, n_head: 2 });
  const folder = path.join(dir, "gpt2");
  await written.savePretrained(folder);
  const original = native.readIntoTensorAsync;
  const outcomes: boolean[] = [];
  native.readIntoTensorAsync = async (options) => {
    const filled = await original(options);
    outcomes.push(filled);
    return filled;
  };
  try {
    const loaded = await models.fromPretrained(folder);
    const expected = written.stateDict();
    const got = loaded.stateDict();
    expect(Object.keys(got).sort()).toEqual(Object.keys(expected).sort());
    for (const key of Object.keys(expected)) expect(got[key].equal(expected[key])).toBe(true);
    // Every tensor of the file (the tied lm_head is not one) took the direct path.
    const header = await io.readSafetensorsHeader(path.join(folder, "model.safetensors"));
    expect(outcomes).toEqual(Array(header.tensors.length).fill(true));
    // In bfloat16 each goes through the staging path, converted.
    outcomes.length = 0;
    const half = await models.fromPretrained(folder, { dtype: "bfloat16" });
    expect(outcomes.every((filled) => !filled)).toBe(true);
    expect(half.stateDict()["transformer.h.0.attn.c_attn.weight"].equal(expected["transformer.h.0.attn.c_attn.weight"].to("bfloat16"))).toBe(true);
  } finally {
    native.readIntoTensorAsync = original;
  }
});
