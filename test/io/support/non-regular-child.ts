/**
 * Child process of non-regular-files.test.ts: every reader is pointed at a FIFO, a symbolic link
 * to a FIFO, a directory and a character device. Run in a child so that a reader that blocks on a
 * FIFO (for ever) fails the parent's timeout instead of hanging the test runner. Prints one JSON
 * line: for each case, the error's class name and message (or "returned" when nothing was thrown).
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { lora, nn, tensor } from "../../../lib";
import {
  loadSafetensors,
  loadSafetensorsSync,
  loadStateDictFile,
  loadStateDictFileSync,
  readSafetensorsHeader,
  readSafetensorsHeaderSync,
  saveStateDictSync,
} from "../../../lib/io";
import { makeTempDir } from "../../helpers/temp";

class Net extends nn.Module {
  fc = new nn.Linear(4, 4);
}

const root = makeTempDir("tl-nonregular-");
const good = path.join(root, "good");
lora.injectAdapter(new Net(), { targetModules: ["fc"], r: 2 }).saveAdapter(good);
saveStateDictSync(path.join(root, "ok.safetensors"), { w: tensor([1, 2]) });

/** An adapter folder whose file `which` is replaced by `kind`. */
function adapterWith(which: "adapter_model.safetensors" | "adapter_config.json", kind: string): string {
  const dir = path.join(root, `${kind}-${which}`);
  fs.cpSync(good, dir, { recursive: true });
  const target = path.join(dir, which);
  fs.rmSync(target);
  makeNonRegular(target, kind);
  return dir;
}

function makeNonRegular(target: string, kind: string): void {
  if (kind === "fifo") execFileSync("mkfifo", [target]);
  else if (kind === "link-to-fifo") {
    const fifo = `${target}.fifo`;
    execFileSync("mkfifo", [fifo]);
    fs.symlinkSync(fifo, target);
  } else if (kind === "directory") fs.mkdirSync(target);
  else if (kind === "char-device") fs.symlinkSync("/dev/zero", target);
  else throw new Error(kind);
}

type Outcome = { name: string; message: string };
const results: Record<string, Outcome> = {};
async function attempt(label: string, fn: () => unknown): Promise<void> {
  try {
    await fn();
    results[label] = { name: "returned", message: "" };
  } catch (e) {
    results[label] = { name: (e as Error).constructor.name, message: (e as Error).message };
  }
}

(async () => {
  for (const kind of ["fifo", "link-to-fifo", "directory", "char-device"]) {
    const file = path.join(root, `${kind}.safetensors`);
    makeNonRegular(file, kind);
    await attempt(`${kind}: loadSafetensorsSync`, () => loadSafetensorsSync(file));
    await attempt(`${kind}: loadSafetensors`, () => loadSafetensors(file));
    await attempt(`${kind}: readSafetensorsHeaderSync`, () => readSafetensorsHeaderSync(file));
    await attempt(`${kind}: readSafetensorsHeader`, () => readSafetensorsHeader(file));
    await attempt(`${kind}: loadStateDictFileSync`, () => loadStateDictFileSync(file));
    await attempt(`${kind}: loadStateDictFile`, () => loadStateDictFile(file));
    for (const which of ["adapter_model.safetensors", "adapter_config.json"] as const) {
      const dir = adapterWith(which, kind);
      await attempt(`${kind} as ${which}: loadAdapter`, () => lora.loadAdapter(new Net(), dir));
      await attempt(`${kind} as ${which}: loadAdapterAsync`, () => lora.loadAdapterAsync(new Net(), dir));
      if (which === "adapter_config.json") {
        await attempt(`${kind} as ${which}: readAdapterConfig`, () => lora.readAdapterConfig(path.join(dir, which)));
      }
    }
  }
  // The regular files next to them still load.
  await attempt("regular: loadSafetensorsSync", () => loadSafetensorsSync(path.join(root, "ok.safetensors")));
  await attempt("regular: loadAdapterAsync", () => lora.loadAdapterAsync(new Net(), good));
  fs.rmSync(root, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(results) + "\n");
})();
