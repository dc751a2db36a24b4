/**
 * The demo's data, generated on the spot (nothing is downloaded): character-level text from
 * two small grammars. Task A is plain English-like sentences; task B keeps the grammar and the
 * alphabet but speaks of other things, so B is related to A yet needs new knowledge.
 */
import { Tensor, tensor } from "../lib";

/** The alphabet: lowercase letters, space and full stop. Token id = index here. */
export const ALPHABET = "abcdefghijklmnopqrstuvwxyz .";
export const VOCAB = ALPHABET.length;

interface Grammar {
  subjects: string[];
  verbs: string[];
  objects: string[];
  places: string[];
}

const TASK_A: Grammar = {
  subjects: ["the cat", "a dog", "the bird", "my friend", "the child", "a farmer"],
  verbs: ["sees", "likes", "finds", "takes", "wants", "paints"],
  objects: ["a ball", "the bread", "some milk", "a red hat", "the small box", "a book"],
  places: ["in the garden", "at home", "by the river", "on the hill", "near the house"],
};

const TASK_B: Grammar = {
  subjects: ["the robot", "a pilot", "the engine", "our crew", "the drone", "a sensor"],
  verbs: ["scans", "builds", "guides", "tracks", "powers", "repairs"],
  objects: ["a rocket", "the orbit", "some fuel", "a quiet moon", "the solar panel", "a probe"],
  places: ["in deep space", "at the station", "past the comet", "over the crater", "near mars"],
};

export type Task = "A" | "B";

/** A small deterministic PRNG (mulberry32) so the demo's text is the same on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` sentences of task `task`, joined into one text. */
export function generateText(task: Task, count: number, seed: number): string {
  const g = task === "A" ? TASK_A : TASK_B;
  const rand = prng(seed);
  const pick = (list: string[]) => list[Math.floor(rand() * list.length)];
  const sentences: string[] = [];
  for (let i = 0; i < count; i++) {
    const place = rand() < 0.5 ? ` ${pick(g.places)}` : "";
    sentences.push(`${pick(g.subjects)} ${pick(g.verbs)} ${pick(g.objects)}${place}.`);
  }
  return sentences.join(" ");
}

/** Token ids of `text`. */
export function encode(text: string): number[] {
  return [...text].map((c) => {
    const id = ALPHABET.indexOf(c);
    if (id < 0) throw new RangeError(`character ${JSON.stringify(c)} is not in the alphabet`);
    return id;
  });
}

/** Next-character examples: each row holds `context` ids and the id that follows them. */
export interface Examples {
  inputs: Tensor; // (N, context) int64
  targets: Tensor; // (N) int64
  count: number;
}

/** Builds next-character examples from `ids` with a sliding window of `context` characters. */
export function makeExamples(ids: number[], context: number): Examples {
  const count = ids.length - context;
  const inputs = new BigInt64Array(count * context);
  const targets = new BigInt64Array(count);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < context; j++) inputs[i * context + j] = BigInt(ids[i + j]);
    targets[i] = BigInt(ids[i + context]);
  }
  return { inputs: tensor(inputs, { shape: [count, context] }), targets: tensor(targets), count };
}

/** A batch of `size` rows starting at row `start` (wrapping around). */
export function batchAt(examples: Examples, start: number, size: number): { inputs: Tensor; targets: Tensor } {
  const s = start % Math.max(1, examples.count - size);
  return { inputs: examples.inputs.narrow(0, s, size), targets: examples.targets.narrow(0, s, size) };
}
