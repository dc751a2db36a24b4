/** Dotted module paths: split into owner and name, resolved child by child, and the parent found for a swap. */
import { nn } from "../../lib";
import { getSubmodule, parentOf, splitModulePath } from "../../lib/nn/module-paths";

class Block extends nn.Module {
  fc = new nn.Linear(2, 3);
  heads = new nn.ModuleList([new nn.Linear(3, 3), new nn.Linear(3, 1)]);
}
class Net extends nn.Module {
  blocks = new nn.ModuleDict({ first: new Block() });
}

test("splitModulePath: owner and last name", () => {
  expect(splitModulePath("a.b.c")).toEqual(["a.b", "c"]);
  expect(splitModulePath("fc1.weight")).toEqual(["fc1", "weight"]);
  expect(splitModulePath("c")).toEqual(["", "c"]);
});

test("getSubmodule finds every path namedModules lists, through ModuleDict and ModuleList, and nothing else", () => {
  const net = new Net();
  const listed = net.namedModules();
  expect(listed.length).toBeGreaterThan(4);
  for (const [path, module] of listed) expect(getSubmodule(net, path)).toBe(module);
  expect(getSubmodule(net, "blocks.first.heads.2")).toBeUndefined();
  expect(getSubmodule(net, "blocks.second.fc")).toBeUndefined();
});

test("parentOf gives the parent and name that replace the module", () => {
  const net = new Net();
  const { parent, name } = parentOf(net, "blocks.first.fc");
  expect(parent).toBe(getSubmodule(net, "blocks.first"));
  expect(name).toBe("fc");
  const other = new nn.Linear(2, 3);
  parent.setChild(name, other);
  expect(getSubmodule(net, "blocks.first.fc")).toBe(other);
  expect(parentOf(net, "blocks").parent).toBe(net);
  expect(() => parentOf(net, "blocks.second.fc")).toThrow(new RangeError('path: no module "blocks.second" holds "blocks.second.fc"'));
});
