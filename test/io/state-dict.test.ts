import * as path from "path";
import { tensor, randn } from "../../lib";
import { io } from "../../lib";
import { tempDir } from "./support/files";

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

describe("state dict files", () => {
  test("saveStateDict → loadStateDictFile returns the same record, tagged format=pt", async () => {
    const record = { "fc.weight": randn([4, 3]), "fc.bias": tensor([0.5, -1, 2, 0]), "emb.weight": randn([10, 2], { dtype: "float64" }) };
    const file = path.join(dir, "model.safetensors");
    await io.saveStateDict(file, record);
    const back = await io.loadStateDictFile(file);
    expect(Object.keys(back)).toEqual(["emb.weight", "fc.bias", "fc.weight"]);
    for (const [k, v] of Object.entries(record)) expect(back[k].toBytes().equals(v.toBytes())).toBe(true);
    expect(await io.loadSafetensorsMetadata(file)).toEqual({ format: "pt" });
  });

  test("the sync twins agree; caller metadata is kept and may override format", () => {
    const file = path.join(dir, "sd.safetensors");
    io.saveStateDictSync(file, new Map([["w", tensor([1, 2])]]), { format: "np", epoch: "3" });
    expect(io.loadSafetensorsMetadataSync(file)).toEqual({ format: "np", epoch: "3" });
    expect(io.loadStateDictFileSync(file).w.toList()).toEqual([1, 2]);
  });
});
