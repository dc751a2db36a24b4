/**
 * A folder that saveAdapter wrote for several adapters (each not named "default" in a subfolder)
 * holds no adapter at its top: loading it names the subfolders and how to pick one, instead of
 * only saying that adapter_config.json is missing.
 */
import * as path from "path";
import { FormatError, lora } from "../../lib";
import { cleanupTmp, seededModel, tmpDir } from "./helpers";

afterEach(cleanupTmp);

function savedWithoutDefault(): string {
  const dir = tmpDir();
  const m = lora.injectAdapter(seededModel(1), { targetModules: ["fc1"], r: 2 }, "styles");
  m.addAdapter("tone", { targetModules: ["head"], r: 2 });
  expect(m.saveAdapter(dir)).toEqual([path.join(dir, "styles"), path.join(dir, "tone")]);
  return dir;
}

it("loadAdapter lists the adapter subfolders and suggests adapterName", async () => {
  const dir = savedWithoutDefault();
  const expected =
    /holds no adapter itself but adapters in the subfolders styles, tone .*pick one with adapterName: "styles" \(torch-lora CLI: --adapter-name styles\)/;
  expect(() => lora.loadAdapter(seededModel(1), dir)).toThrow(FormatError);
  expect(() => lora.loadAdapter(seededModel(1), dir)).toThrow(expected);
  await expect(lora.loadAdapterAsync(seededModel(1), dir)).rejects.toThrow(expected);
  // A name that is none of them says so.
  expect(() => lora.loadAdapter(seededModel(1), dir, { adapterName: "mood" })).toThrow(/subfolders styles, tone and none is called "mood"/);
  // Following the advice works.
  expect(lora.loadAdapter(seededModel(1), dir, { adapterName: "tone" }).adapterNames).toEqual(["tone"]);
});

it("a folder with neither an adapter nor adapter subfolders still names the missing file", () => {
  const dir = tmpDir();
  expect(() => lora.loadAdapter(seededModel(1), dir)).toThrow(/adapter_config\.json: missing \(an adapter directory holds/);
});
