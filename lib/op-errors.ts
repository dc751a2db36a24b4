/**
 * Errors of tensor ops, worded in one place. A failed op is rethrown here with the op's name,
 * the shapes of its operands and, where a shape rule was broken, that rule — never libtorch's
 * C++ frames. The checks run only after a failure, so a successful op pays nothing for them.
 */

/** What an error message needs to know of one operand (a Tensor's shape and dtype, or a plain value). */
export interface OperandInfo {
  name: string;
  /** The operand's shape when it is a live Tensor, else null. */
  shape: readonly number[] | null;
  dtype: string | null;
}

/** A broken dtype rule: reported as a TypeError rather than a RangeError. */
export interface DtypeBreak {
  dtypeMessage: string;
}

/**
 * Explains which shape (or dtype) rule the operands break, or null when none of the rules it
 * knows is broken.
 */
export type ShapeRule = (operands: readonly OperandInfo[], args: readonly unknown[]) => string | DtypeBreak | null;

/** `[2, 3]`. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** libtorch's text without the C++ source locations and stack frames some builds append. */
export function stripNativeFrames(message: string): string {
  let text = message;
  const raised = text.search(/\n?Exception raised from /);
  if (raised >= 0) text = text.slice(0, raised);
  return text
    .split("\n")
    .filter((line) => !/^\s*frame #\d+/.test(line) && !/\(most recent call first\)/.test(line) && !/\.(cpp|cc|h|cu):\d+/.test(line))
    .join("\n")
    .trim();
}

const shapeOf = (operands: readonly OperandInfo[], i: number): readonly number[] | null => operands[i]?.shape ?? null;

/** The broadcast shape of `a` and `b`, or the first dim (counted from the end, negative) where they clash. */
function broadcastShapes(a: readonly number[], b: readonly number[]): { shape: number[] } | { clash: number } {
  const n = Math.max(a.length, b.length);
  const shape: number[] = new Array(n);
  for (let k = 1; k <= n; k++) {
    const x = a[a.length - k] ?? 1;
    const y = b[b.length - k] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return { clash: -k };
    shape[n - k] = x === 1 ? y : x;
  }
  return { shape };
}

function broadcastMessage(a: readonly number[], b: readonly number[], what: [string, string]): string | null {
  const r = broadcastShapes(a, b);
  if ("shape" in r) return null;
  const k = -r.clash;
  return (
    `cannot broadcast shapes ${formatShape(a)} and ${formatShape(b)}: dim ${r.clash} (from the end) is ` +
    `${a[a.length - k]} in ${what[0]} and ${b[b.length - k]} in ${what[1]}; sizes must be equal, or one of them 1`
  );
}

/** Elementwise ops with two (or more) operands that broadcast against each other. */
export const broadcastRule: ShapeRule = (operands) => {
  const live = operands.filter((o) => o.shape !== null);
  for (let i = 0; i < live.length; i++) {
    for (let j = i + 1; j < live.length; j++) {
      const m = broadcastMessage(live[i].shape!, live[j].shape!, [live[i].name, live[j].name]);
      if (m) return m;
    }
  }
  return null;
};

/** In-place elementwise ops: the operands broadcast, and to the shape of the first (written) one. */
export const inPlaceBroadcastRule: ShapeRule = (operands, args) => {
  const clash = broadcastRule(operands, args);
  if (clash) return clash;
  const self = shapeOf(operands, 0);
  const other = shapeOf(operands, 1);
  if (!self || !other) return null;
  const r = broadcastShapes(self, other);
  if ("shape" in r && formatShape(r.shape) !== formatShape(self)) {
    return `${operands[1].name} of shape ${formatShape(other)} broadcasts with ${formatShape(self)} to ${formatShape(r.shape)}, but an in-place op must keep the shape ${formatShape(self)} of the tensor it writes`;
  }
  return null;
};

/** `matmul`: 1-D and N-D operands, with batch dims broadcast. */
export const matmulRule: ShapeRule = (operands) => {
  // matmul does not promote, and ATen's "expected scalar type Float but found Double" names no argument.
  const [first, second] = operands;
  if (first?.dtype && second?.dtype && first.dtype !== second.dtype) {
    return { dtypeMessage: `${second.name}: expected dtype ${first.dtype} (the dtype of ${first.name}), got ${second.dtype}` };
  }
  const a = shapeOf(operands, 0);
  const b = shapeOf(operands, 1);
  if (!a || !b) return null;
  const pair = `cannot multiply shapes ${formatShape(a)} and ${formatShape(b)}`;
  if (a.length === 0 || b.length === 0) return `${pair}: both operands need at least one dim (use mul() for scalars)`;
  const inner = a[a.length - 1];
  if (b.length === 1) {
    if (inner !== b[0]) return `${pair}: the last dim of the first (${inner}) must equal the size of the second (${b[0]})`;
    return null;
  }
  const other = b[b.length - 2];
  if (inner !== other) {
    return `${pair}: the last dim of the first (${inner}) must equal the second-to-last of the second (${other})`;
  }
  const batchA = a.slice(0, -2);
  const batchB = b.slice(0, -2);
  const r = broadcastShapes(batchA, batchB);
  if ("shape" in r) return null;
  const k = -r.clash;
  return (
    `${pair}: the batch dims ${formatShape(batchA)} and ${formatShape(batchB)} do not broadcast: batch dim ${r.clash} ` +
    `(from the end) is ${batchA[batchA.length - k]} in the first and ${batchB[batchB.length - k]} in the second; sizes must be equal, or one of them 1`
  );
};

/** `bmm`: two 3-D operands, equal batch sizes, matching inner dims. */
export const bmmRule: ShapeRule = (operands) => {
  const a = shapeOf(operands, 0);
  const b = shapeOf(operands, 1);
  if (!a || !b) return null;
  const pair = `cannot multiply shapes ${formatShape(a)} and ${formatShape(b)}`;
  if (a.length !== 3 || b.length !== 3) return `${pair}: both operands must be 3-D, (b, n, m) and (b, m, p)`;
  if (a[0] !== b[0]) return `${pair}: the batch sizes (${a[0]} and ${b[0]}) must be equal (bmm does not broadcast; matmul does)`;
  if (a[2] !== b[1]) return `${pair}: the last dim of the first (${a[2]}) must equal the second-to-last of the second (${b[1]})`;
  return null;
};

const product = (shape: readonly number[]): number => shape.reduce((p, d) => p * d, 1);

/** `view` and `reshape`: the new shape must hold the same number of elements; one dim may be -1. */
export function reshapeRule(op: "view" | "reshape"): ShapeRule {
  return (operands, args) => {
    const from = shapeOf(operands, 0);
    const to = args[0] as readonly number[];
    if (!from || !Array.isArray(to)) return null;
    const target = `shape ${formatShape(from)} as ${formatShape(to)}`;
    const inferred = to.filter((d) => d === -1).length;
    if (inferred > 1) return `cannot ${op} ${target}: only one dim may be -1`;
    const bad = to.find((d) => d < -1);
    if (bad !== undefined) return `cannot ${op} ${target}: dims must be >= 0 (or -1 for one inferred dim), got ${bad}`;
    const n = product(from);
    const known = product(to.filter((d) => d !== -1));
    if (inferred === 0 && known !== n) {
      return `cannot ${op} ${target}: the new shape holds ${known} elements, the tensor ${n}; the counts must be equal`;
    }
    if (inferred === 1 && (known === 0 ? n !== 0 : n % known !== 0)) {
      return `cannot ${op} ${target}: the tensor's ${n} elements do not divide by the ${known} of the known dims, so -1 has no size`;
    }
    if (op === "view") {
      return (
        `cannot view ${target}: the element counts match, but the tensor's memory layout (after a transpose, ` +
        `permute or expand) does not allow this view without a copy; use reshape(), or contiguous().view()`
      );
    }
    return null;
  };
}

/** A dim argument at `args[i]` must be in range for the first operand's rank. */
function dimMessage(rank: number, dim: unknown, name = "dim"): string | null {
  if (typeof dim !== "number" || !Number.isInteger(dim)) return null;
  const lo = -Math.max(rank, 1);
  const hi = Math.max(rank, 1) - 1;
  if (dim < lo || dim > hi) return `${name} ${dim} is out of range for a tensor with ${rank} dims (expected a dim in [${lo}, ${hi}])`;
  return null;
}

/** Ops whose first argument is a dim of the first operand. */
export const dimRule: ShapeRule = (operands, args) => {
  const s = shapeOf(operands, 0);
  return s ? dimMessage(s.length, args[0]) : null;
};

/** `narrow(dim, start, length)`. */
export const narrowRule: ShapeRule = (operands, args) => {
  const s = shapeOf(operands, 0);
  if (!s) return null;
  const [dim, start, length] = args as number[];
  const bad = dimMessage(s.length, dim);
  if (bad) return bad;
  if (![dim, start, length].every(Number.isInteger)) return null;
  const size = s[dim < 0 ? dim + s.length : dim];
  const begin = start < 0 ? start + size : start;
  if (begin < 0 || begin > size) return `start ${start} is out of range for dim ${dim} of size ${size} (expected a start in [${-size}, ${size}])`;
  if (length < 0) return `length must be >= 0, got ${length}`;
  if (begin + length > size) return `start (${begin}) + length (${length}) exceeds the size of dim ${dim} (${size}) of shape ${formatShape(s)}`;
  return null;
};

/** `expand(shape)`: each dim keeps its size, or grows from 1; new dims go in front. */
export const expandRule: ShapeRule = (operands, args) => {
  const from = shapeOf(operands, 0);
  const to = args[0] as readonly number[];
  if (!from || !Array.isArray(to)) return null;
  const target = `cannot expand ${formatShape(from)} to ${formatShape(to)}`;
  if (to.length < from.length) return `${target}: the new shape needs at least the tensor's ${from.length} dims`;
  for (let k = 1; k <= from.length; k++) {
    const want = to[to.length - k];
    const have = from[from.length - k];
    if (want !== -1 && want !== have && have !== 1) {
      return `${target}: dim ${-k} (from the end) has size ${have}, which can only stay ${have} (or -1), not become ${want}; only size-1 dims expand`;
    }
  }
  const lead = to.slice(0, to.length - from.length).find((d) => d < 0);
  if (lead !== undefined) return `${target}: new leading dims cannot be -1`;
  return null;
};

/** `cat` and `stack`: every tensor has the first one's shape (except along `dim`, for cat). */
export function joinRule(op: "cat" | "stack"): ShapeRule {
  return (operands, args) => {
    const first = shapeOf(operands, 0);
    if (!first) return null;
    const rank = op === "stack" ? first.length + 1 : first.length;
    const bad = dimMessage(rank, args[0]);
    if (bad) return bad;
    const d = (args[0] as number) < 0 ? (args[0] as number) + rank : (args[0] as number);
    for (let i = 1; i < operands.length; i++) {
      const s = operands[i].shape;
      if (!s) continue;
      const same = s.length === first.length && s.every((v, k) => v === first[k] || (op === "cat" && k === d));
      if (!same) {
        const rule = op === "stack" ? "stack needs tensors of equal shapes" : `cat needs equal shapes except in dim ${args[0]}`;
        return `${operands[i].name} has shape ${formatShape(s)} but ${operands[0].name} has ${formatShape(first)}: ${rule}`;
      }
    }
    return null;
  };
}

/** `dim` given to a reduction: one dim, a list, or none. */
export const dimsRule: ShapeRule = (o, args) => {
  const d = args[0];
  if (Array.isArray(d)) return d.map((v) => dimRule(o, [v])).find((m) => m) ?? null;
  return dimRule(o, args);
};

/** `permute(dims)`: every dim exactly once. */
export const permuteRule: ShapeRule = (o, args) => {
  const s = o[0].shape;
  const order = args[0] as number[];
  if (!s || !Array.isArray(order)) return null;
  if (order.length !== s.length) {
    return `dims [${order.join(", ")}] name ${order.length} dims, but the tensor of shape ${formatShape(s)} has ${s.length}; list each dim once`;
  }
  const bad = order.map((d) => dimRule(o, [d])).find((m) => m);
  if (bad) return bad;
  const seen = new Set(order.map((d) => (d < 0 ? d + s.length : d)));
  return seen.size === s.length ? null : `dims [${order.join(", ")}] repeat a dim; list each dim of the tensor once`;
};

/** `split(sizes, dim)`: the listed sizes must add up to the dim's size. */
export function splitRule(o: readonly OperandInfo[], sizes: number | readonly number[], dim: number): string | null {
  const s = o[0].shape;
  if (!s || !Array.isArray(sizes) || !Number.isInteger(dim)) return null;
  const size = s[dim < 0 ? dim + s.length : dim];
  const total = sizes.reduce((a: number, b: number) => a + b, 0);
  return total === size ? null : `the sizes [${sizes.join(", ")}] add up to ${total}, but dim ${dim} of shape ${formatShape(s)} has size ${size}`;
}

/** `topk(k, dim)`: k within the dim's size. */
export function topkRule(o: readonly OperandInfo[], k: number, dim: number): string | null {
  const s = o[0].shape;
  if (!s || !Number.isInteger(k) || !Number.isInteger(dim)) return null;
  const size = s.length === 0 ? 1 : s[dim < 0 ? dim + s.length : dim];
  return k >= 0 && k <= size ? null : `k (${k}) must be in [0, ${size}], the size of dim ${dim} of shape ${formatShape(s)}`;
}

/** `triu`/`tril`: a matrix or a batch of them. */
export const atLeast2D: ShapeRule = (o) => {
  const s = o[0].shape;
  return s && s.length < 2 ? `expected a tensor with at least 2 dims (a matrix or a batch of them), got shape ${formatShape(s)}` : null;
};

/** An operand that must hold integer indices (int64). */
export function indexDtypeRule(indexAt: number, allowed: readonly string[] = ["int64"]): ShapeRule {
  return (operands) => {
    const o = operands[indexAt];
    if (!o?.dtype || allowed.includes(o.dtype)) return null;
    return { dtypeMessage: `${o.name}: expected a Tensor of dtype ${allowed.join(" or ")} (indices), got ${o.dtype}` };
  };
}

/** An operand that must be a bool mask. */
export function maskDtypeRule(maskAt: number): ShapeRule {
  return (operands) => {
    const o = operands[maskAt];
    if (!o?.dtype || o.dtype === "bool") return null;
    return { dtypeMessage: `${o.name}: expected a bool Tensor (build one with a comparison such as gt() or eq()), got ${o.dtype}` };
  };
}

/** The first rule of `rules` that explains the failure. */
export function firstRule(...rules: ShapeRule[]): ShapeRule {
  return (operands, args) => {
    for (const rule of rules) {
      const m = rule(operands, args);
      if (m) return m;
    }
    return null;
  };
}

/**
 * The error to throw for op `op` that failed with `err`: its class kept for argument errors
 * (TypeError/RangeError), a RangeError naming the rule when `rule` finds the broken one, else
 * libtorch's message without frames; always prefixed with the op, always with the shapes.
 */
export function opError(op: string, err: unknown, operands: readonly OperandInfo[], args: readonly unknown[] = [], rule?: ShapeRule): unknown {
  if (!(typeof err === "object" && err !== null && "message" in err)) return err;
  const e = err as Error;
  const shapes = operands.filter((o) => o.shape !== null).map((o) => `${o.name} ${formatShape(o.shape!)}`);
  const withShapes = (text: string): string => (shapes.length ? `${text} (shapes: ${shapes.join(", ")})` : text);
  const message = stripNativeFrames(e.message);
  const prefixed = (text: string): string => (text.startsWith(`${op}:`) ? text : `${op}: ${text}`);
  if (e.name === "TypeError") return new TypeError(prefixed(message));
  if (e.name === "RangeError") return new RangeError(withShapes(prefixed(message)));
  const explained = rule?.(operands, args);
  if (typeof explained === "string") return new RangeError(prefixed(explained));
  if (explained) return new TypeError(prefixed(explained.dtypeMessage));
  return new Error(withShapes(prefixed(message)));
}
