/**
 * Mixed-adapter batches (PEFT's `adapter_names=`): inside {@link withAdapterNames} every LoRA
 * layer applies row `i`'s adapter to row `i` of its input (rows are the first dimension), and
 * `"__base__"` rows get the base output, bit for bit. Each layer makes one native call, which
 * orders the rows by adapter and runs each adapter's rows through its own factors (no JS loop
 * over adapters, no per-row copies of factors).
 */
import { native } from "../binding";
import { StateError, describe } from "../errors";
import { Conv1D, Embedding, Linear } from "../nn/layers";
import { Tensor, handleOf } from "../tensor";
import { runThenCleanUp } from "../sync-or-async";
import { noSuchAdapter } from "./adapter-names";
import { LoraEmbedding, LoraLayer, RowAdapterForward } from "./layers";

/** The row name that means "no adapter": the base model's output, as in PEFT. */
export const BASE_ADAPTER = "__base__";

type AnyLoraLayer = LoraLayer<Linear | Conv1D | Embedding>;

/** What {@link withAdapterNames} needs of a LoRA model. */
export interface MixedBatchModel {
  readonly adapterNames: string[];
  loraLayers(): [string, AnyLoraLayer][];
}

/** The per-row adapter names of one batch, applied by every layer's forward. */
class RowAdapters implements RowAdapterForward {
  constructor(readonly names: readonly string[]) {}

  forward(layer: AnyLoraLayer, input: Tensor): Tensor {
    layer.assertIdle("forward");
    // The input is checked before its shape is read, so a non-tensor gets the same message as outside a scope.
    const inputHandle = handleOf(input, layer instanceof LoraEmbedding ? "ids" : "input");
    const rows = input.shape[0];
    if (input.shape.length === 0 || rows !== this.names.length) {
      throw new RangeError(
        `adapterNames: expected one name per row of the batch (the input's first dimension, ${input.shape.length ? rows : "none: a scalar input"}), got ${this.names.length} names`,
      );
    }
    if (layer.merged) {
      throw new StateError(
        `withAdapterNames: adapters ${layer.mergedAdapters.join(", ")} are merged into a layer; unmerge() first (mixed batches need unmerged adapters)`,
      );
    }
    // Only the adapters the rows name are passed, numbered in order of first use: with many
    // adapters loaded (a server), a batch costs what its own adapters cost. A layer that lacks a
    // row's adapter gives that row its base output, as PEFT does; a disabled layer gives every
    // row its base output.
    const held = new Set(layer.disabled ? [] : layer.adapterNames);
    const used = new Map<string, number>();
    const rowIndex = this.names.map((n) => {
      if (!held.has(n)) return -1;
      let k = used.get(n);
      if (k === undefined) used.set(n, (k = used.size));
      return k;
    });
    const factors = [];
    const scales: number[] = [];
    for (const name of used.keys()) {
      const s = layer.settings(name)!;
      if (layer.training && s.dropout > 0) {
        throw new StateError(
          `withAdapterNames: adapter "${name}" has dropout ${s.dropout} and the model is in training mode; call eval() first (mixed batches run without dropout)`,
        );
      }
      const [A, B] = layer.factors(name);
      factors.push(handleOf(A), handleOf(B));
      scales.push(s.scale);
    }
    const common = { factors, scales, rows: rowIndex };
    const base = layer.base_layer;
    if (layer instanceof LoraEmbedding) {
      const emb = base as Embedding;
      return new Tensor(native.loraMixedEmbedding({ ...common, ids: inputHandle, weight: handleOf(emb.weight), paddingIdx: emb.paddingIdx ?? -1 }));
    }
    const lin = base as Linear | Conv1D;
    return new Tensor(
      native.loraMixedLinear({
        ...common,
        input: inputHandle,
        weight: handleOf(lin.weight),
        bias: lin.bias ? handleOf(lin.bias) : null,
        fanInFanOut: lin instanceof Conv1D,
      }),
    );
  }
}

/** Checks `names` by PEFT's rules: strings, each an adapter of the model or "__base__". */
function checkRowNames(model: MixedBatchModel, names: unknown): string[] {
  if (!Array.isArray(names) || names.length === 0)
    throw new TypeError(`adapterNames: expected a non-empty array with one adapter name per row, got ${describe(names)}`);
  const existing = model.adapterNames;
  names.forEach((n, i) => {
    if (typeof n !== "string") throw new TypeError(`adapterNames[${i}]: expected an adapter name (a string), got ${describe(n)}`);
    if (n !== BASE_ADAPTER && !existing.includes(n)) throw noSuchAdapter(n, [...existing, BASE_ADAPTER], `adapterNames[${i}]`);
  });
  return names as string[];
}

/**
 * Runs `fn` with row `i` of every batch using adapter `names[i]` (`"__base__"`: no adapter), as
 * PEFT's `adapter_names=` does. Checked before `fn` runs: every name exists, and no adapter is
 * merged. Each LoRA layer then checks that its input's first dimension equals `names.length`.
 *
 * Adapters may have different ranks and scalings. Gradients flow to each row's factors when
 * grad mode is on; dropout is not applied, so training mode with dropout is refused.
 * Scopes do not nest. When `fn` returns a promise, the names hold until it settles, so run
 * forwards of other batches only after it (a server batches them, see examples/serve.ts).
 */
export function withAdapterNames<T>(model: MixedBatchModel, names: string[], fn: () => T): T {
  if (typeof fn !== "function") throw new TypeError(`fn: expected a function, got ${describe(fn)}`);
  const checked = checkRowNames(model, names);
  const layers = model.loraLayers();
  const merged = layers.filter(([, l]) => l.merged).map(([p]) => p);
  if (merged.length) throw new StateError(`withAdapterNames: ${merged.join(", ")} ha${merged.length > 1 ? "ve" : "s"} merged adapters; unmerge() first`);
  if (layers.some(([, l]) => l.rowAdapters)) throw new StateError("withAdapterNames: another withAdapterNames scope is open on this model; scopes do not nest");
  for (const [, l] of layers) l.assertIdle("withAdapterNames");
  const plan = new RowAdapters(checked.slice());
  for (const [, l] of layers) l.rowAdapters = plan;
  const end = (): void => {
    for (const [, l] of layers) if (l.rowAdapters === plan) l.rowAdapters = null;
  };
  return runThenCleanUp(fn, end);
}
