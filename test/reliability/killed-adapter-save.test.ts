/**
 * A killed adapter save leaves the complete old adapter or the complete new one. A child process
 * saves three different models over one folder in a loop (sync and async, adapters "default" and
 * "second") and is SIGKILLed at random moments; every time, each adapter in the folder loads and
 * its weights and config come from the same save. A crash at the worst moment (between the
 * two renames that switch the folders) leaves the old adapter findable by the loaders.
 * Seed: TL_FUZZ_SEED.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import * as lib from "../../lib";
import { lora } from "../../lib";
import { DIST, itDist } from "./support/child";
import { makeTempDir } from "../helpers/temp";

const loop = require("./support/adapter-save-loop") as { net(t: typeof lib): lib.nn.Module; build(t: typeof lib, k: number): lora.LoraModel };

const KILLS = 30;
const SEED = Number(process.env.TL_FUZZ_SEED ?? 20240611);
const LOOP = path.join(__dirname, "support/adapter-save-loop.js");

let root: string;
beforeEach(() => (root = makeTempDir("tl-killsave-")));
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

/** Which save the adapter `name` in `dir` comes from (k), after checking that all its files agree. */
function savedBy(dir: string, name: string): number {
  const model = lora.loadAdapter(loop.net(lib), dir, { adapterName: name });
  const values = new Set<number>();
  for (const [, layer] of model.loraLayers())
    for (const f of layer.factors(name)) for (const v of new Float32Array(new Uint8Array(f.toBytes()).buffer)) values.add(v);
  expect(values.size).toBe(1);
  const [value] = values;
  const { resolved } = lora.readAdapterConfig(lora.locateAdapter(dir, name).configPath);
  // Model k saves factors k + 1 with lora_alpha 2(k + 1): config and weights of one save.
  expect(resolved.loraAlpha).toBe(2 * value);
  return value - 1;
}

function litter(dir: string): string[] {
  const base = path.basename(dir);
  return fs.readdirSync(path.dirname(dir)).filter((n) => n.startsWith(`.${base}.`));
}

/** Runs the save loop and kills it `delayMs` after it starts saving. */
async function killMidSave(dir: string, delayMs: number): Promise<void> {
  const child = spawn(process.execPath, [LOOP, DIST, dir], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once("data", () => resolve());
    child.once("exit", () => reject(new Error(`the save loop exited early: ${stderr}`)));
  });
  await new Promise((r) => setTimeout(r, delayMs));
  child.kill("SIGKILL");
  expect(await exited).toBe("SIGKILL");
}

itDist(
  `SIGKILL at ${KILLS} random moments of saving: every adapter in the folder loads, with weights and config of one save`,
  async () => {
    let seed = SEED >>> 0 || 1;
    const random = (): number => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    let caughtMidSave = 0;
    const seen = new Set<number>();
    for (let i = 0; i < KILLS; i++) {
      const dir = path.join(root, `run${i}`);
      loop.build(lib, 0).saveAdapter(dir);
      await killMidSave(dir, Math.floor(random() * 300));
      if (litter(dir).length > 0) caughtMidSave++;
      for (const name of ["default", "second"]) seen.add(savedBy(dir, name));
      // The next save cleans up after the killed one and leaves a normal folder.
      loop.build(lib, 2).saveAdapter(dir);
      expect(litter(dir)).toEqual([]);
      expect(savedBy(dir, "default")).toBe(2);
      expect(savedBy(dir, "second")).toBe(2);
    }
    console.log(
      `killed adapter saves (seed ${SEED}): ${KILLS} kills, ${caughtMidSave} in the middle of a save, saves seen in the folders: ${[...seen].sort().join(", ")}`,
    );
    // The kills landed inside saves, and saves went through before them.
    expect(caughtMidSave).toBeGreaterThan(0);
    expect(seen.size).toBeGreaterThan(1);
  },
  240_000,
);

itDist(
  "a crash between the two renames leaves the old adapter where the loaders find it; the next save completes the folder",
  async () => {
    const dir = path.join(root, "adapter");
    loop.build(lib, 0).saveAdapter(dir);
    fs.writeFileSync(path.join(dir, "README.md"), "notes");
    const child = spawn(process.execPath, [LOOP, DIST, dir, "--crash-between-renames"], { stdio: "ignore" });
    expect(await new Promise((resolve) => child.on("exit", (_c, signal) => resolve(signal)))).toBe("SIGKILL");
    // The worst moment: the old folder moved aside, the new one not yet in place.
    expect(fs.existsSync(dir)).toBe(false);
    expect(
      litter(dir)
        .map((n) => n.replace(/-\d+-[0-9a-f]+$/, ""))
        .sort(),
    ).toEqual([".adapter.old", ".adapter.tmp"]);
    expect(savedBy(dir, "default")).toBe(0);
    expect(savedBy(dir, "second")).toBe(0);
    await expect(lora.loadAdapterAsync(loop.net(lib), dir)).resolves.toBeInstanceOf(lora.LoraModel);

    await loop.build(lib, 1).saveAdapterAsync(dir, { adapterName: "default" });
    expect(litter(dir)).toEqual([]);
    expect(savedBy(dir, "default")).toBe(1);
    // What the interrupted save had not replaced survives: the other adapter and the user's file.
    expect(savedBy(dir, "second")).toBe(0);
    expect(fs.readFileSync(path.join(dir, "README.md"), "utf8")).toBe("notes");
  },
  60_000,
);
