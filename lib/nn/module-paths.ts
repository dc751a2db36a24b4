/**
 * Dotted paths in a module tree (`encoder.layers.0.fc1`, `fc1.weight`): splitting one into its
 * owner and last name, and finding the module a path names. The one place these are spelled, for
 * adapter injection (which swaps a child in its parent) and for anything that names parameters
 * by their owner.
 */
import { Module } from "./module";

/** The owner's path and the last name of a dotted path: `"a.b.c"` → `["a.b", "c"]`, `"c"` → `["", "c"]`. */
export function splitModulePath(path: string): [owner: string, name: string] {
  const cut = path.lastIndexOf(".");
  return cut < 0 ? ["", path] : [path.slice(0, cut), path.slice(cut + 1)];
}

/** The module at `path` under `root` (`""` is `root` itself), child by child as `namedModules` names them; undefined when there is none. */
export function getSubmodule(root: Module, path: string): Module | undefined {
  if (path === "") return root;
  let module: Module | undefined = root;
  for (const name of path.split(".")) {
    module = module.getChild(name);
    if (module === undefined) return undefined;
  }
  return module;
}

/**
 * The parent of the module at `path` under `root`, and the module's name in it, as needed to
 * replace it (`parent.setChild(name, other)`). Throws a RangeError naming `path` when the parent
 * does not exist.
 */
export function parentOf(root: Module, path: string): { parent: Module; name: string } {
  const [owner, name] = splitModulePath(path);
  const parent = getSubmodule(root, owner);
  if (parent === undefined) throw new RangeError(`path: no module ${JSON.stringify(owner)} holds ${JSON.stringify(path)}`);
  return { parent, name };
}
