/**
 * Counting calls of the addon's entry points while a test's code runs (which native path it
 * took), the calls themselves and their results unchanged.
 */
import { native } from "../../lib/binding";

type Entry = (...args: unknown[]) => unknown;
const table = native as unknown as Record<string, Entry>;

/** Which calls count: all of them, or those whose result passes this test. */
export type Counted = (name: string, result: unknown) => boolean;

/** Wraps each entry in `names` to count into `counts`; returns what puts the originals back. */
function spy(names: string[], counts: Record<string, number>, counted: Counted): () => void {
  const originals = names.map((n) => table[n]);
  names.forEach((n, i) => {
    table[n] = (...args: unknown[]) => {
      const result = originals[i](...args);
      if (counted(n, result)) counts[n]++;
      return result;
    };
  });
  return () => names.forEach((n, i) => (table[n] = originals[i]));
}

/** How many times each entry in `names` is called (and passes `counted`) while `fn` runs. */
export function countCalls(names: string[], fn: () => void, counted: Counted = () => true): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  const restore = spy(names, counts, counted);
  try {
    fn();
  } finally {
    restore();
  }
  return counts;
}

/** {@link countCalls} for an async `fn`: counts until its Promise settles. */
export async function countCallsAsync(names: string[], fn: () => Promise<unknown>): Promise<Record<string, number>> {
  const counts: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  const restore = spy(names, counts, () => true);
  try {
    await fn();
  } finally {
    restore();
  }
  return counts;
}
