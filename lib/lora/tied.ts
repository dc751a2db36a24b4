/**
 * Tied parameters and merging. A model may hold one weight tensor in two places, as GPT-2's output
 * head holds the token embedding's weight (`head.weight = emb.weight`). Merging an adapter into
 * such a weight would change the other holder too, so the merged model would no longer compute
 * what the adapted one did. Such merges are refused, naming both places.
 *
 * Only the same Tensor object is a tie that breaks: a distinct tensor that merely shares storage
 * (a `detach()` or a view of the weight) keeps the pristine values, because a merge gives the
 * merged weight a buffer of its own rather than writing into the shared one.
 */
import { StateError } from "../errors";
import { Module } from "../nn/module";
import { Tensor } from "../tensor";

/** Every place in `model` that holds each parameter tensor, by dotted path (`head.weight`). */
export function parameterHolders(model: Module): Map<Tensor, string[]> {
  const holders = new Map<Tensor, string[]>();
  for (const [path, module] of model.namedModules()) {
    for (const [name, t] of module.ownParameters()) {
      const key = path ? `${path}.${name}` : name;
      const list = holders.get(t);
      if (list) list.push(key);
      else holders.set(t, [key]);
    }
  }
  return holders;
}

/** A layer whose base weight a merge would change. */
interface MergeTarget {
  base_layer: { weight: Tensor };
}

/**
 * Throws a StateError when the base weight of one of `layers` (given with their paths in
 * `model`) is also held elsewhere in `model`. Nothing is changed.
 */
export function checkUntied(model: Module, layers: [string, MergeTarget][], operation: string): void {
  if (layers.length === 0) return;
  const holders = parameterHolders(model);
  for (const [path, layer] of layers) {
    const own = path ? `${path}.base_layer.weight` : "base_layer.weight";
    const others = (holders.get(layer.base_layer.weight) ?? []).filter((p) => p !== own);
    if (others.length === 0) continue;
    const other = others[0];
    throw new StateError(
      `${operation}: ${own} is tied to ${others.join(", ")} (the same tensor); merging the adapter of ${path} would change ${others.join(", ")} too, ` +
        `so the merged model would differ from the adapted one. Keep this adapter unmerged (merge({ adapterNames }) without it), ` +
        `or untie the weights first, e.g. model.${other} = model.${other}.detach().clone()`,
    );
  }
}
