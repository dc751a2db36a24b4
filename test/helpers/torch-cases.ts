/**
 * Many ops against PyTorch in one Python run: each case is a torch-lora expression and the
 * PyTorch expression that should give the same tensors (shape, dtype and values).
 */
import { Tensor, tensor } from "../../lib";
import { itTorch, py } from "./python";
import { expectClose } from "./stats";

/** A named input: flat values, shape and dtype; visible to both sides under its name. */
export interface CaseInput {
  values: number[];
  shape: number[];
  dtype: "float64" | "float32" | "int64" | "bool";
}

/** What an op gives: one tensor, several, or PyTorch's (values, indices) pair. */
export type OpResult = Tensor | Tensor[] | { values: Tensor; indices: Tensor };

/** torch-lora's side, given the inputs as tensors, and PyTorch's side as a Python expression over them. */
export interface OpCase {
  js: (t: Record<string, Tensor>) => OpResult;
  py: string;
}

interface Flat {
  shape: number[];
  dtype: string;
  values: (number | string)[];
}

const NON_FINITE: Record<string, number> = { inf: Infinity, "-inf": -Infinity, nan: NaN };

/** Compares values, non-finite ones exactly (same infinity, or both NaN), the rest within `tol`. */
function expectValues(actual: number[], expected: (number | string)[], tol: number): void {
  const want = expected.map((v) => (typeof v === "string" ? NON_FINITE[v] : v));
  expect(actual.length).toBe(want.length);
  const finite = want.map((v) => Number.isFinite(v));
  want.forEach((v, i) => {
    if (!finite[i]) expect([i, actual[i]]).toEqual([i, v]);
  });
  expectClose(
    actual.filter((_, i) => finite[i]),
    want.filter((_, i) => finite[i]),
    tol,
    tol,
  );
}

/** The inputs as torch-lora tensors. */
export function makeInputs(inputs: Record<string, CaseInput>): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(inputs).map(([name, i]) => [name, tensor(i.values, { shape: i.shape, dtype: i.dtype })]));
}

function flatten(r: OpResult): Flat[] {
  const list = r instanceof Tensor ? [r] : Array.isArray(r) ? r : [r.values, r.indices];
  return list.map((t) => ({ shape: t.shape, dtype: t.dtype, values: t.toList() as (number | string)[] }));
}

/** PyTorch's results for every case, keyed by case name (one Python process). */
export function torchResults(cases: Record<string, OpCase>, inputs: Record<string, CaseInput>): Record<string, Flat[]> {
  return py<Record<string, Flat[]>>(
    `
F = torch.nn.functional
env = {"torch": torch, "F": F}
for name, i in inp["inputs"].items():
    env[name] = torch.tensor(i["values"], dtype=getattr(torch, i["dtype"])).reshape(i["shape"])
def flat(r):
    rs = list(r) if isinstance(r, (tuple, list)) else [r]
    # JSON has no Infinity or NaN: those travel as strings
    return [{"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
             "values": [v if math.isfinite(v) else str(v) for v in L(t)]} for t in rs]
out = {name: flat(eval(expr, env)) for name, expr in inp["cases"].items()}
`,
    { inputs, cases: Object.fromEntries(Object.entries(cases).map(([n, c]) => [n, c.py])) },
  );
}

/**
 * One test per case comparing torch-lora with PyTorch (skipped, with a note, without PyTorch).
 * Floats agree to `tol` (relative and absolute); integers and bools exactly.
 */
export function describeAgainstTorch(title: string, inputs: Record<string, CaseInput>, cases: Record<string, OpCase>, tol = 1e-12): void {
  describe(title, () => {
    let ref: Record<string, Flat[]> | undefined;
    const reference = (): Record<string, Flat[]> => (ref ??= torchResults(cases, inputs));
    for (const [name, c] of Object.entries(cases)) {
      itTorch(`${name}: ${c.py}`, () => {
        const ours = flatten(c.js(makeInputs(inputs)));
        const theirs = reference()[name];
        expect(ours.map((o) => o.shape)).toEqual(theirs.map((t) => t.shape));
        expect(ours.map((o) => o.dtype)).toEqual(theirs.map((t) => t.dtype));
        ours.forEach((o, k) => expectValues(o.values as number[], theirs[k].values, tol));
      });
    }
  });
}
